// config.json parsing: the fixtures (both config styles) and every error path, each naming the
// file and the field.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "common/error.h"
#include "runtime/config/model_config.h"
#include "runtime/families/load_config.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

TEST(ModelConfig, ReadsTheTransformers5StyleLlamaConfig) {
  const ModelConfig c = load_model_config(testing::fixtures_dir() / "llama_gqa");
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 160);
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope.theta, 10000.0f);
  EXPECT_EQ(c.rope.rotary_dim, 8);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.torch_dtype, DType::kBF16);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>{2});
}

TEST(ModelConfig, ReadsTheHubStyleQwen2Config) {
  const ModelConfig c = load_model_config(testing::fixtures_dir() / "qwen2_tied");
  EXPECT_EQ(c.architecture, "Qwen2ForCausalLM");
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FLOAT_EQ(c.rope.theta, 1e6f);
  EXPECT_EQ(c.rope.scaling, RopeScaling::kNone);
  EXPECT_EQ(c.num_heads, 12);
  EXPECT_EQ(c.torch_dtype, DType::kF32);
}

TEST(ModelConfig, ReadsExplicitHeadDimBiasesAndLlama3Scaling) {
  const ModelConfig c = load_model_config(testing::fixtures_dir() / "llama_bias_f16");
  EXPECT_EQ(c.head_dim, 8);  // not hidden_size / heads = 16
  EXPECT_TRUE(c.qkv_bias && c.o_bias && c.mlp_bias);
  EXPECT_EQ(c.rope.scaling, RopeScaling::kLlama3);
  EXPECT_FLOAT_EQ(c.rope.factor, 8.0f);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 64);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(c.torch_dtype, DType::kF16);
}

TEST(ModelConfig, ReadsYarnAsQwen2DocumentsIt) {
  // {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16} with
  // max_position_embeddings left at 16, as Qwen2.5's README has users edit config.json for 128k.
  const ModelConfig c = load_model_config(testing::fixtures_dir() / "qwen2_yarn");
  EXPECT_EQ(c.rope.scaling, RopeScaling::kYarn);
  EXPECT_FLOAT_EQ(c.rope.factor, 4.0f);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 16);
  EXPECT_EQ(c.max_position_embeddings, 64);  // served: original * factor
  EXPECT_FLOAT_EQ(c.rope.beta_fast, 32.0f);
  EXPECT_FLOAT_EQ(c.rope.beta_slow, 1.0f);
  EXPECT_TRUE(c.rope.truncate);
  EXPECT_FLOAT_EQ(c.rope.attention_factor, 0.1f * std::log(4.0f) + 1.0f);  // get_mscale(4)
}

class BadConfig : public ::testing::Test {
 protected:
  // Writes config.json with `text` and expects an error whose message contains each fragment.
  void expect_error(const std::string& text, ErrorCode code,
                    std::initializer_list<std::string> fragments) {
    std::ofstream(dir_.path() / "config.json") << text;
    try {
      load_model_config(dir_.path());
      FAIL() << "accepted: " << text;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      const std::string message = e.what();
      EXPECT_NE(message.find((dir_.path() / "config.json").string()), std::string::npos) << message;
      for (const std::string& fragment : fragments) {
        EXPECT_NE(message.find(fragment), std::string::npos) << message << " lacks " << fragment;
      }
    }
  }

  static std::string llama(const std::string& extra) {
    return R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
               "vocab_size": 100, "num_hidden_layers": 2, "num_attention_heads": 8)" +
           extra + "}";
  }

  testing::ScratchDir dir_{"config"};
};

TEST_F(BadConfig, MissingFile) {
  try {
    load_model_config(dir_.path());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos);
  }
}

TEST_F(BadConfig, MalformedJson) {
  expect_error("{\"architectures\": [", ErrorCode::kInvalidArgument, {"malformed JSON"});
}

TEST_F(BadConfig, NumberPastDoubleRangeIsMalformedJsonNotACrash) {
  // nlohmann raises out_of_range (not parse_error) for 1e999; found by the config_json fuzz target.
  expect_error("{\"hidden_size\": 1e999}", ErrorCode::kInvalidArgument, {"malformed JSON", "1e999"});
}

TEST_F(BadConfig, NotAnObject) {
  expect_error("[1, 2]", ErrorCode::kInvalidArgument, {"expected a JSON object"});
}

TEST_F(BadConfig, UnsupportedArchitectureListsTheSupportedOnes) {
  expect_error(R"({"architectures": ["GPT2LMHeadModel"]})", ErrorCode::kUnimplemented,
               {"'architectures'", "GPT2LMHeadModel", "LlamaForCausalLM", "Qwen2ForCausalLM"});
}

TEST_F(BadConfig, MissingArchitectures) {
  expect_error(R"({"hidden_size": 64})", ErrorCode::kInvalidArgument, {"'architectures'"});
}

TEST_F(BadConfig, MissingField) {
  expect_error(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64})",
               ErrorCode::kInvalidArgument, {"'intermediate_size'", "missing"});
}

TEST_F(BadConfig, NonPositiveAndMistypedFields) {
  expect_error(llama(R"(, "num_key_value_heads": 0)"), ErrorCode::kInvalidArgument,
               {"'num_key_value_heads'", "positive"});
  expect_error(llama(R"(, "num_key_value_heads": 3)"), ErrorCode::kInvalidArgument,
               {"'num_key_value_heads'", "does not divide"});
  expect_error(llama(R"(, "rms_norm_eps": "small")"), ErrorCode::kInvalidArgument,
               {"'rms_norm_eps'"});
  expect_error(llama(R"(, "tie_word_embeddings": 1)"), ErrorCode::kInvalidArgument,
               {"'tie_word_embeddings'"});
  expect_error(llama(R"(, "eos_token_id": [2, -1])"), ErrorCode::kInvalidArgument,
               {"'eos_token_id'"});
}

// Issue 12: a number that becomes a size, an index or a divisor is range-checked first. 2^40 heads
// used to be a SIGFPE on every rank (cast to int 0, then hidden_size / 0); a 1e12 vocabulary an
// allocation failure naming no field.
TEST_F(BadConfig, ShapeFieldsOutOfRangeNameTheField) {
  expect_error(llama(R"(, "num_attention_heads": 1099511627776)"), ErrorCode::kInvalidArgument,
               {"field 'num_attention_heads': 1099511627776 is out of range (at most 2147483647)"});
  expect_error(llama(R"(, "vocab_size": 1000000000000)"), ErrorCode::kInvalidArgument,
               {"field 'vocab_size': 1000000000000 is out of range"});
  expect_error(llama(R"(, "hidden_size": 18446744073709551615)"), ErrorCode::kInvalidArgument,
               {"field 'hidden_size': 18446744073709551615 is out of range"});
  expect_error(llama(R"(, "num_hidden_layers": 3e9)"), ErrorCode::kInvalidArgument,
               {"field 'num_hidden_layers': expected an integer"});
  expect_error(llama(R"(, "eos_token_id": 4294967296)"), ErrorCode::kInvalidArgument,
               {"field 'eos_token_id'"});
  expect_error(llama(R"(, "rms_norm_eps": 1e300)"), ErrorCode::kInvalidArgument,
               {"field 'rms_norm_eps': must be a finite float32"});
}

// A scaled RoPE serves trained x factor positions: a huge factor is refused before the float
// product becomes an integer (it was undefined behaviour).
TEST_F(BadConfig, ScaledContextPastInt32IsRefusedNamingTheFactor) {
  expect_error(llama(R"(, "rope_scaling": {"rope_type": "dynamic", "factor": 1e30})"),
               ErrorCode::kInvalidArgument,
               {"field 'rope_scaling.factor'", "positions is out of range (at most 2147483647)"});
  expect_error(llama(R"(, "rope_scaling": {"rope_type": "yarn", "factor": 3e38,
                        "original_max_position_embeddings": 32768})"),
               ErrorCode::kInvalidArgument,
               {"field 'rope_scaling.factor'", "positions is out of range"});
}

TEST_F(BadConfig, ShapeProductsAreCheckedForOverflow) {
  // Heads that fit an int but exceed hidden_size: hidden_size / heads would be 0.
  expect_error(llama(R"(, "num_attention_heads": 1073741824, "num_key_value_heads": 1)"),
               ErrorCode::kInvalidArgument,
               {"field 'num_attention_heads': 1073741824 does not divide hidden_size (64)"});
  expect_error(llama(R"(, "num_attention_heads": 6)"), ErrorCode::kInvalidArgument,
               {"field 'num_attention_heads': 6 does not divide hidden_size (64) and no head_dim"});
  expect_error(llama(R"(, "head_dim": 1073741824)"), ErrorCode::kInvalidArgument,
               {"field 'head_dim': 1073741824 * num_attention_heads (8) = 8589934592 is out of range"});
  expect_error(llama(R"(, "vocab_size": 2000000000, "hidden_size": 8192, "head_dim": 8)"),
               ErrorCode::kInvalidArgument,
               {"field 'vocab_size': the embedding [2000000000 x 8192]", "more than 2^40"});
  expect_error(llama(R"(, "intermediate_size": 2000000000, "hidden_size": 2048, "head_dim": 8)"),
               ErrorCode::kInvalidArgument, {"field 'intermediate_size': the MLP"});
  expect_error(llama(R"(, "num_hidden_layers": 2000000000, "hidden_size": 65536, "head_dim": 8)"),
               ErrorCode::kInvalidArgument,
               {"field 'num_hidden_layers': 2000000000 layers of this shape", "more than 2^48"});
}

TEST_F(BadConfig, FamilyFieldNamesAppearInRangeErrors) {
  expect_error(R"({"architectures": ["ChatGLMModel"], "hidden_size": 64, "num_layers": 2,
                   "num_attention_heads": 1099511627776, "ffn_hidden_size": 128,
                   "padded_vocab_size": 100})",
               ErrorCode::kInvalidArgument, {"field 'num_attention_heads'", "out of range"});
  expect_error(R"({"architectures": ["ChatGLMModel"], "hidden_size": 64, "num_layers": 2,
                   "num_attention_heads": 4, "ffn_hidden_size": 128,
                   "padded_vocab_size": 1000000000000})",
               ErrorCode::kInvalidArgument, {"field 'padded_vocab_size'", "out of range"});
  expect_error(R"({"architectures": ["ChatGLMModel"], "hidden_size": 64, "num_layers": 2,
                   "num_attention_heads": 4, "ffn_hidden_size": 128, "kv_channels": 1073741824,
                   "padded_vocab_size": 100})",
               ErrorCode::kInvalidArgument, {"field 'kv_channels'", "is out of range"});
  expect_error(R"({"architectures": ["QWenLMHeadModel"], "hidden_size": 64, "num_hidden_layers": 2,
                   "num_attention_heads": 128, "intermediate_size": 128, "vocab_size": 100})",
               ErrorCode::kInvalidArgument, {"field 'num_attention_heads': 128 does not divide"});
  expect_error(R"({"architectures": ["Qwen2MoeForCausalLM"], "hidden_size": 64,
                   "intermediate_size": 128, "vocab_size": 100, "num_hidden_layers": 2,
                   "num_attention_heads": 8, "num_experts": 4294967296})",
               ErrorCode::kInvalidArgument, {"field 'num_experts'", "out of range"});
  expect_error(R"({"architectures": ["Qwen2MoeForCausalLM"], "hidden_size": 64,
                   "intermediate_size": 128, "vocab_size": 100, "num_hidden_layers": 2,
                   "num_attention_heads": 8, "num_experts": -1})",
               ErrorCode::kInvalidArgument, {"field 'num_experts'", "non-negative"});
}

TEST_F(BadConfig, UnsupportedRopeScalingActivationAndDtype) {
  expect_error(llama(R"(, "rope_scaling": {"rope_type": "longrope", "factor": 4})"),
               ErrorCode::kUnimplemented, {"rope_scaling.rope_type", "longrope"});
  expect_error(llama(R"(, "hidden_act": "gelu")"), ErrorCode::kInvalidArgument, {"'hidden_act'"});
  expect_error(llama(R"(, "torch_dtype": "int8")"), ErrorCode::kInvalidArgument, {"'torch_dtype'"});
  expect_error(llama(R"(, "partial_rotary_factor": 0.1)"), ErrorCode::kInvalidArgument,
               {"'partial_rotary_factor'"});
}

TEST_F(BadConfig, YarnFieldsAreCheckedAndTheAttentionFactorFollowsMscale) {
  expect_error(llama(R"(, "rope_scaling": {"type": "yarn"})"), ErrorCode::kInvalidArgument,
               {"'rope_scaling.factor'", "missing"});
  expect_error(llama(R"(, "rope_scaling": {"type": "yarn", "factor": 0.5})"),
               ErrorCode::kInvalidArgument, {"'rope_scaling.factor'", "at least 1"});
  expect_error(llama(R"(, "rope_scaling": {"type": "yarn", "factor": 4, "beta_fast": -1})"),
               ErrorCode::kInvalidArgument, {"'beta_fast'", "positive"});
  expect_error(llama(R"(, "rope_scaling": {"type": "yarn", "factor": 4, "truncate": "no"})"),
               ErrorCode::kInvalidArgument, {"'truncate'"});
  // DeepSeek-style mscale / mscale_all_dim: get_mscale(f, mscale) / get_mscale(f, mscale_all_dim).
  std::ofstream(dir_.path() / "config.json") << llama(
      R"(, "max_position_embeddings": 4096, "rope_scaling": {"type": "yarn", "factor": 40,
         "mscale": 1.0, "mscale_all_dim": 0.5})");
  const ModelConfig c = load_model_config(dir_.path());
  const float expected = (0.1f * std::log(40.0f) + 1.0f) / (0.05f * std::log(40.0f) + 1.0f);
  EXPECT_NEAR(c.rope.attention_factor, expected, 1e-6f);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 4096);  // default: max_position_embeddings
  EXPECT_EQ(c.max_position_embeddings, 4096 * 40);
  // An explicit attention_factor wins.
  std::ofstream(dir_.path() / "config.json") << llama(
      R"(, "rope_scaling": {"type": "yarn", "factor": 4, "attention_factor": 1.5})");
  EXPECT_FLOAT_EQ(load_model_config(dir_.path()).rope.attention_factor, 1.5f);
}

TEST_F(BadConfig, Qwen2SlidingWindowIsRefusedNotIgnored) {
  expect_error(R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
                   "vocab_size": 100, "num_hidden_layers": 2, "num_attention_heads": 8,
                   "use_sliding_window": true})",
               ErrorCode::kUnimplemented, {"'use_sliding_window'"});
}

}  // namespace
}  // namespace tpserve::runtime
