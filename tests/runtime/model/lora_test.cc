// LoRA adapters: the merge math on a hand-computed block, and every error path (each naming the
// adapter file and the tensor or field), against the qwen2_tied base's weight plan.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/field_table.h"
#include "runtime/config/model_config.h"
#include "runtime/families/architecture.h"
#include "runtime/families/load_config.h"
#include "runtime/model/lora.h"
#include "tests/runtime/formats/safetensors_writer.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

constexpr const char* kQ = "base_model.model.model.layers.0.self_attn.q_proj";

class LoraTest : public ::testing::Test {
 protected:
  LoraTest() : config_(load_model_config(testing::fixtures_dir() / "qwen2_tied")) {}

  void write(const nlohmann::json& config_edits, const testing::SafetensorsWriter& tensors) {
    nlohmann::json config = {{"peft_type", "LORA"}, {"r", 2}, {"lora_alpha", 4},
                             {"target_modules", {"q_proj"}}, {"bias", "none"}};
    if (config_edits.is_object()) config.merge_patch(config_edits);
    std::ofstream(dir_.path() / "adapter_config.json") << config.dump();
    tensors.write(dir_.path() / "adapter_model.safetensors");
  }

  // q_proj of qwen2_tied is [96 (12 heads x 8), 96].
  static testing::SafetensorsWriter q_pair(int64_t rank_a, int64_t rank_b, int64_t out = 96) {
    testing::SafetensorsWriter writer;
    writer.add_f32(std::string(kQ) + ".lora_A.weight", {rank_a, 96},
                   std::vector<float>(static_cast<size_t>(rank_a * 96), 0.5f));
    writer.add_f32(std::string(kQ) + ".lora_B.weight", {out, rank_b},
                   std::vector<float>(static_cast<size_t>(out * rank_b), 0.25f));
    return writer;
  }

  std::vector<WeightShard> plan(int tp = 1, int rank = 0) const {
    return plan_weights(config_, qwen2_architecture(), rank_shape(config_, tp, rank));
  }

  void expect_error(std::initializer_list<std::string> fragments) {
    try {
      LoraAdapter::open(dir_.path())->validate(plan());
      FAIL() << "accepted";
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(dir_.path().string()), std::string::npos) << message;
      for (const std::string& fragment : fragments) {
        EXPECT_NE(message.find(fragment), std::string::npos) << message << " lacks " << fragment;
      }
    }
  }

  ModelConfig config_;
  testing::ScratchDir dir_{"lora"};
};

TEST_F(LoraTest, MergesScaledProductIntoTheRanksBlockOnly) {
  write({}, q_pair(2, 2));
  const auto adapter = LoraAdapter::open(dir_.path());
  EXPECT_FLOAT_EQ(adapter->scaling(), 2.0f);  // alpha 4 / r 2
  adapter->validate(plan(2, 1));
  // A block of rows 48..50, cols 10..13 of q_proj: each entry gains 2 * sum_k 0.25 * 0.5 = 0.5.
  SourceBlock block{"model.layers.0.self_attn.q_proj.weight", 96, 96, "", {48, 50}, {10, 13}};
  std::vector<float> staged(6, 1.0f);
  adapter->merge(block, staged.data());
  for (float value : staged) EXPECT_FLOAT_EQ(value, 1.5f);
  // Blocks of tensors the adapter does not target are left alone.
  block.tensor = "model.layers.0.self_attn.k_proj.weight";
  adapter->merge(block, staged.data());
  EXPECT_FLOAT_EQ(staged[0], 1.5f);
}

TEST_F(LoraTest, RsLoraScalesBySqrtRank) {
  write({{"r", 4}, {"lora_alpha", 8}, {"use_rslora", true}}, q_pair(4, 4));
  EXPECT_FLOAT_EQ(LoraAdapter::open(dir_.path())->scaling(), 4.0f);  // 8 / sqrt(4)
}

TEST_F(LoraTest, RankNotMatchingTheConfigNamesTheTensor) {
  write({{"r", 4}}, q_pair(2, 2));
  expect_error({"q_proj.lora_A.weight' has shape [2, 96], expected [4, 96]", "r = 4"});
}

TEST_F(LoraTest, OutFeaturesNotMatchingTheBaseNamesTheTensor) {
  write({}, q_pair(2, 2, 64));
  expect_error({"q_proj.lora_B.weight' has shape [64, 2], expected [96, 2]",
                "'model.layers.0.self_attn.q_proj.weight' [96, 96]"});
}

TEST_F(LoraTest, TargetModuleMissingFromTheBaseNamesTheTensor) {
  testing::SafetensorsWriter writer;
  const std::string module = "base_model.model.model.layers.0.self_attn.qkv_proj";
  writer.add_f32(module + ".lora_A.weight", {2, 96}, std::vector<float>(192, 0.0f));
  writer.add_f32(module + ".lora_B.weight", {96, 2}, std::vector<float>(192, 0.0f));
  write({{"target_modules", {"qkv_proj"}}}, writer);
  expect_error({"qkv_proj.lora_A.weight' targets 'model.layers.0.self_attn.qkv_proj.weight'",
                "not a linear weight of the base model"});
}

TEST_F(LoraTest, LayerBeyondTheBaseNamesTheTensor) {
  testing::SafetensorsWriter writer;
  const std::string module = "base_model.model.model.layers.7.mlp.down_proj";
  writer.add_f32(module + ".lora_A.weight", {2, 128}, std::vector<float>(256, 0.0f));
  writer.add_f32(module + ".lora_B.weight", {96, 2}, std::vector<float>(192, 0.0f));
  write({}, writer);
  expect_error({"layers.7.mlp.down_proj.lora_A.weight' targets"});
}

TEST_F(LoraTest, HalfAPairNamesTheTensor) {
  testing::SafetensorsWriter writer;
  writer.add_f32(std::string(kQ) + ".lora_A.weight", {2, 96}, std::vector<float>(192, 0.0f));
  write({}, writer);
  expect_error({"q_proj.lora_A.weight' has no matching lora_B"});
}

TEST_F(LoraTest, EmbeddingLoraIsRefusedByName) {
  testing::SafetensorsWriter writer = q_pair(2, 2);
  writer.add_f32("base_model.model.model.embed_tokens.lora_embedding_A", {2, 512},
                 std::vector<float>(1024, 0.0f));
  write({}, writer);
  expect_error({"embed_tokens.lora_embedding_A' is not a LoRA factor"});
}

TEST_F(LoraTest, UnsupportedConfigsNameTheField) {
  const std::pair<nlohmann::json, std::string> cases[] = {
      {{{"use_dora", true}}, "'use_dora'"},
      {{{"fan_in_fan_out", true}}, "'fan_in_fan_out'"},
      {{{"peft_type", "IA3"}}, "'peft_type'"},
      {{{"bias", "all"}}, "'bias'"},
      {{{"rank_pattern", {{"q_proj", 8}}}}, "'rank_pattern'"},
      {{{"modules_to_save", {"lm_head"}}}, "'modules_to_save'"},
      {{{"r", 0}}, "'r'"},
      {{{"r", 4294967296}}, "'r'"},
      // Issue 20: both loaded silently and computed something else.
      {{{"layer_replication", {{0, 2}, {1, 2}}}}, "'layer_replication'"},
      {{{"alora_invocation_tokens", {151644, 77091}}}, "'alora_invocation_tokens'"},
      {{{"lora_bias", true}}, "'lora_bias'"},
      {{{"use_qalora", true}}, "'use_qalora'"},
      {{{"target_parameters", {"mlp.experts.gate_up_proj"}}}, "'target_parameters'"},
      {{{"trainable_token_indices", {1, 2}}}, "'trainable_token_indices'"},
      {{{"alpha_pattern", {{"q_proj", 8}}}}, "'alpha_pattern'"},
  };
  for (const auto& [edit, field] : cases) {
    write(edit, q_pair(2, 2));
    expect_error({"adapter_config.json", field});
  }
}

TEST_F(LoraTest, RefusalsAreOneLineNamingTheFileAndField) {
  write({{"layer_replication", {{0, 2}, {1, 2}}}}, q_pair(2, 2));
  try {
    LoraAdapter::open(dir_.path());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              (dir_.path() / "adapter_config.json").string() +
                  ": field 'layer_replication': [[0,2],[1,2]] is not supported: layer replication "
                  "is not supported");
  }
}

TEST_F(LoraTest, PeftsOwnAdapterConfigHasNoUnknownFieldsAndUnsetRefusalsPass) {
  // The fixture is PEFT 0.21's own adapter_config.json: layer_replication and
  // alora_invocation_tokens are written as null, rank_pattern as {}, and must load.
  const auto adapter = LoraAdapter::open(testing::fixtures_dir() / "qwen2_tied_lora");
  EXPECT_TRUE(adapter->unknown_fields().empty())
      << ::testing::PrintToString(adapter->unknown_fields());
  EXPECT_FLOAT_EQ(adapter->scaling(), 4.0f);  // lora_alpha 16 / r 4
}

TEST_F(LoraTest, UnknownFieldsAreListedAndLogged) {
  testing::LogCapture capture;
  write({{"lora_new_feature", true}, {"target_modules", {"q_proj"}}}, q_pair(2, 2));
  const auto adapter = LoraAdapter::open(dir_.path());
  EXPECT_EQ(adapter->unknown_fields(), std::vector<std::string>{"lora_new_feature"});
  EXPECT_NE(capture.text().find("[warning] " + unknown_fields_line(dir_.path() / "adapter_config.json",
                                                                    {"lora_new_feature"})),
            std::string::npos)
      << capture.text();
}

TEST_F(LoraTest, NumberPastDoubleRangeNamesTheFile) {
  q_pair(2, 2).write(dir_.path() / "adapter_model.safetensors");
  std::ofstream(dir_.path() / "adapter_config.json") << R"({"peft_type": "LORA", "r": 1e999})";
  try {
    LoraAdapter::open(dir_.path());
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("adapter_config.json: malformed JSON"), std::string::npos)
        << e.what();
  }
}

TEST_F(LoraTest, MissingFilesNameThePath) {
  try {
    LoraAdapter::open(dir_.path());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("adapter_config.json"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tpserve::runtime
