// generation_config.json and tokenizer_config.json through their field tables: real files from
// released checkpoints read as transformers reads them, every bad value refused with one line
// naming the file and the field, refused fields refused by name, unknown fields listed.
#include <gtest/gtest.h>

#include <fstream>

#include "common/error.h"
#include "runtime/tokenizer/model_files.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

class ModelFiles : public ::testing::Test {
 protected:
  GenerationConfig generation(const std::string& text) {
    std::ofstream(dir_.path() / "generation_config.json") << text;
    return read_generation_config(dir_.path());
  }
  void expect_generation_error(const std::string& text, const std::string& fragment) {
    try {
      generation(text);
      ADD_FAILURE() << "accepted " << text;
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_EQ(message.find((dir_.path() / "generation_config.json").string()), 0u) << message;
      EXPECT_NE(message.find(fragment), std::string::npos) << message << " lacks " << fragment;
    }
  }
  testing::ScratchDir dir_{"model_files"};
};

TEST_F(ModelFiles, AbsentGenerationConfigLeavesEverythingUnset) {
  const GenerationConfig g = read_generation_config(dir_.path());
  EXPECT_FALSE(g.present);
  EXPECT_FALSE(g.do_sample || g.temperature || g.top_p || g.top_k || g.min_p || g.repetition_penalty);
  EXPECT_TRUE(g.eos_token_ids.empty());
}

TEST_F(ModelFiles, ReadsReleasedGenerationConfigs) {
  // Qwen2.5-7B-Instruct's generation_config.json.
  GenerationConfig g = generation(R"({"bos_token_id": 151643, "pad_token_id": 151643,
      "do_sample": true, "eos_token_id": [151645, 151643], "repetition_penalty": 1.05,
      "temperature": 0.7, "top_p": 0.8, "top_k": 20, "transformers_version": "4.37.0"})");
  EXPECT_TRUE(g.present);
  EXPECT_EQ(g.do_sample, true);
  EXPECT_FLOAT_EQ(*g.temperature, 0.7f);
  EXPECT_FLOAT_EQ(*g.top_p, 0.8f);
  EXPECT_EQ(g.top_k, 20);
  EXPECT_FLOAT_EQ(*g.repetition_penalty, 1.05f);
  EXPECT_FALSE(g.min_p);
  EXPECT_EQ(g.eos_token_ids, (std::vector<int32_t>{151645, 151643}));
  EXPECT_TRUE(g.unknown_fields.empty());
  // Qwen-7B-Chat's (Qwen v1): chat() settings beside the sampling ones.
  g = generation(R"({"chat_format": "chatml", "eos_token_id": 151643, "pad_token_id": 151643,
      "max_window_size": 6144, "max_new_tokens": 512, "do_sample": true, "top_k": 0, "top_p": 0.8,
      "repetition_penalty": 1.1, "transformers_version": "4.31.0"})");
  EXPECT_EQ(g.top_k, 0);
  EXPECT_EQ(g.eos_token_ids, std::vector<int32_t>{151643});
  EXPECT_TRUE(g.unknown_fields.empty());
  // A model-derived file (_from_model_config): ids only.
  g = generation(R"({"_from_model_config": true, "bos_token_id": 1, "eos_token_id": 2,
      "transformers_version": "4.45.0"})");
  EXPECT_FALSE(g.do_sample || g.temperature);
  EXPECT_EQ(g.eos_token_ids, std::vector<int32_t>{2});
}

TEST_F(ModelFiles, BadGenerationValuesNameTheField) {
  expect_generation_error(R"({"top_p": 0})", "field 'top_p': expected a number in (0, 1], got 0");
  expect_generation_error(R"({"top_p": 1.5})", "field 'top_p'");
  expect_generation_error(R"({"temperature": -1})", "field 'temperature'");
  expect_generation_error(R"({"temperature": "hot"})", "field 'temperature'");
  expect_generation_error(R"({"temperature": 1e300})", "field 'temperature'");
  expect_generation_error(R"({"min_p": 2})", "field 'min_p'");
  expect_generation_error(R"({"repetition_penalty": 0})", "field 'repetition_penalty'");
  expect_generation_error(R"({"top_k": -1})", "field 'top_k'");
  expect_generation_error(R"({"top_k": 1.5})", "field 'top_k'");
  expect_generation_error(R"({"top_k": 4294967296})", "field 'top_k'");
  expect_generation_error(R"({"do_sample": "yes"})", "field 'do_sample'");
  expect_generation_error(R"({"eos_token_id": [2, -1]})", "field 'eos_token_id'");
  expect_generation_error(R"({"eos_token_id": 1099511627776})", "field 'eos_token_id'");
  expect_generation_error(R"({"top_p": )", "not valid JSON");
}

TEST_F(ModelFiles, UnknownGenerationFieldsAreListedAndLogged) {
  testing::LogCapture capture;
  const GenerationConfig g = generation(R"({"temperature": 0.5, "dry_multiplier": 0.8})");
  EXPECT_EQ(g.unknown_fields, std::vector<std::string>{"dry_multiplier"});
  EXPECT_NE(capture.text().find("generation_config.json: ignoring fields tpserve does not know"),
            std::string::npos)
      << capture.text();
}

TEST_F(ModelFiles, FixtureTokenizerConfigsHoldNoUnknownFields) {
  for (const char* name : {"qwen2_tied", "llama_gqa", "chatglm", "internlm2", "qwen_v1",
                           "tokenizers/qwen2", "tokenizers/llama3", "tokenizers/mistral_sp",
                           "tokenizers/tiny_bpe"}) {
    const TokenizerSettings settings = read_tokenizer_settings(testing::fixtures_dir() / name);
    EXPECT_TRUE(settings.unknown_fields.empty())
        << name << ": " << ::testing::PrintToString(settings.unknown_fields);
  }
}

TEST_F(ModelFiles, TokenizerConfigRefusalsAndUnknownFields) {
  for (const char* field : {"split_special_tokens", "do_lower_case"}) {
    std::ofstream(dir_.path() / "tokenizer_config.json")
        << R"({"eos_token": "</s>", ")" << field << R"(": true})";
    try {
      read_tokenizer_settings(dir_.path());
      ADD_FAILURE() << field;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kUnimplemented);
      EXPECT_EQ(std::string(e.what()).find((dir_.path() / "tokenizer_config.json").string() +
                                           ": field '" + field + "': true is not supported"),
                0u)
          << e.what();
    }
  }
  std::ofstream(dir_.path() / "tokenizer_config.json")
      << R"({"eos_token": "</s>", "split_special_tokens": false, "fancy_normalizer": 1})";
  const TokenizerSettings settings = read_tokenizer_settings(dir_.path());
  EXPECT_EQ(settings.eos_token, "</s>");
  EXPECT_EQ(settings.unknown_fields, std::vector<std::string>{"fancy_normalizer"});
}

TEST_F(ModelFiles, GenerationEosIdsJoinTheTokenizerSettings) {
  std::ofstream(dir_.path() / "config.json") << R"({"eos_token_id": 2})";
  generation(R"({"eos_token_id": [7, 9]})");
  EXPECT_EQ(read_tokenizer_settings(dir_.path()).eos_token_ids, (std::vector<int32_t>{2, 7, 9}));
}

}  // namespace
}  // namespace tpserve::runtime
