// The family adapters' config readers (Qwen v1, InternLM2, ChatGLM2/3) on their fixtures, their
// error paths (each naming config.json and the field), their weight plans, and N not dividing the
// query heads.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "runtime/config/model_config.h"
#include "runtime/families/architecture.h"
#include "runtime/families/load_config.h"
#include "runtime/model/weight_plan.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

ModelConfig fixture(const char* name) { return load_model_config(testing::fixtures_dir() / name); }

TEST(FamilyConfig, QwenV1ReadsItsOwnFieldNames) {
  const ModelConfig c = fixture("qwen_v1");
  EXPECT_EQ(c.architecture, "QWenLMHeadModel");
  EXPECT_EQ(c.intermediate_size, 96);  // config says 192: both MLP branches
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 8);  // multi-head
  EXPECT_EQ(c.head_dim, 8);      // kv_channels
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-6f);
  EXPECT_FLOAT_EQ(c.rope.theta, 10000.0f);
  EXPECT_EQ(c.rope.rotary_dim, 8);
  EXPECT_FALSE(c.rope.interleaved);
  EXPECT_EQ(c.rope.scaling, RopeScaling::kQwenNtk);
  EXPECT_EQ(c.rope.trained_context, 128);  // seq_length
  EXPECT_EQ(c.logn_attn_context, 128);
  // use_dynamic_ntk / use_logn_attn serve up to 32767 positions (modeling_qwen.py's logn table).
  EXPECT_EQ(c.max_position_embeddings, 32767);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias || c.mlp_bias);  // no_bias: true
  EXPECT_EQ(c.torch_dtype, DType::kBF16);
}

TEST(FamilyConfig, InternLM2ReadsBiasAndDynamicNtk) {
  const ModelConfig c = fixture("internlm2");
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_TRUE(c.qkv_bias && c.o_bias);
  EXPECT_FALSE(c.mlp_bias);
  // rope_scaling {"type": "dynamic", "factor": 2.0}: modeling_internlm2.py's
  // InternLM2DynamicNTKScalingRotaryEmbedding is transformers' "dynamic" formula with M =
  // max_position_embeddings, so it maps onto kDynamic (fixture llama_dynamic checks the math).
  EXPECT_EQ(c.rope.scaling, RopeScaling::kDynamic);
  EXPECT_FLOAT_EQ(c.rope.factor, 2.0f);
  EXPECT_EQ(c.rope.trained_context, 256);
  EXPECT_FLOAT_EQ(c.rope.theta, 1e6f);
  EXPECT_EQ(c.max_position_embeddings, 512);  // 256 * factor
}

TEST(FamilyConfig, QwenV1LongContextSwitches) {
  const ModelConfig c = fixture("qwen_v1_ntk");
  EXPECT_EQ(c.rope.scaling, RopeScaling::kQwenNtk);
  EXPECT_EQ(c.rope.trained_context, 16);
  EXPECT_EQ(c.logn_attn_context, 16);
  EXPECT_EQ(c.max_position_embeddings, 32767);
}

TEST(FamilyConfig, ChatGLMReadsMultiQueryGroupsAndHalfInterleavedRotary) {
  const ModelConfig c = fixture("chatglm");
  EXPECT_EQ(c.architecture, "ChatGLMModel");
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 2);  // multi_query_group_num
  EXPECT_EQ(c.head_dim, 16);     // kv_channels
  EXPECT_EQ(c.intermediate_size, 112);
  EXPECT_EQ(c.vocab_size, 512);  // padded_vocab_size
  EXPECT_EQ(c.rope.rotary_dim, 8);
  EXPECT_TRUE(c.rope.interleaved);
  EXPECT_FLOAT_EQ(c.rope.theta, 20000.0f);  // 10000 * rope_ratio
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-5f);
  EXPECT_EQ(c.max_position_embeddings, 256);  // seq_length
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias || c.mlp_bias);
  EXPECT_EQ(c.torch_dtype, DType::kF16);
}

TEST(FamilyConfig, ChatGLMBiasFollowsAddBiasLinearOrAddQkvBias) {
  // modeling_chatglm.py: query_key_value has bias=config.add_bias_linear or config.add_qkv_bias.
  const ModelConfig bias = fixture("chatglm_bias");  // add_bias_linear true, add_qkv_bias false
  EXPECT_TRUE(bias.qkv_bias && bias.o_bias && bias.mlp_bias);
  EXPECT_FALSE(bias.qkv_per_head);
  const ModelConfig mha = fixture("chatglm_mha");  // multi_query_attention false
  EXPECT_EQ(mha.num_kv_heads, mha.num_heads);
  EXPECT_TRUE(mha.qkv_per_head);
  EXPECT_FLOAT_EQ(mha.rope.theta, 500000.0f);  // 10000 * rope_ratio 50 (chatglm3-6b-32k's)
  EXPECT_EQ(mha.max_position_embeddings, 64);  // seq_length
}

// A fixture's config.json with some fields replaced, in a scratch directory.
class EditedConfig : public ::testing::Test {
 protected:
  void expect_error(const char* name, const nlohmann::json& edits,
                    std::initializer_list<std::string> fragments) {
    std::ifstream in(testing::fixtures_dir() / name / "config.json");
    nlohmann::json config = nlohmann::json::parse(in);
    config.merge_patch(edits);
    std::ofstream(dir_.path() / "config.json") << config.dump();
    try {
      load_model_config(dir_.path());
      FAIL() << "accepted " << edits.dump();
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find((dir_.path() / "config.json").string()), std::string::npos) << message;
      for (const std::string& fragment : fragments) {
        EXPECT_NE(message.find(fragment), std::string::npos) << message << " lacks " << fragment;
      }
    }
  }
  testing::ScratchDir dir_{"family_config"};
};

TEST_F(EditedConfig, QwenV1Errors) {
  expect_error("qwen_v1", {{"intermediate_size", 191}}, {"'intermediate_size'", "191 is odd"});
  expect_error("qwen_v1", {{"kv_channels", 16}}, {"'kv_channels'", "must equal hidden_size (64)"});
  expect_error("qwen_v1", {{"seq_length", 0}}, {"'seq_length'", "positive"});
  expect_error("qwen_v1", {{"rotary_pct", 0.1}}, {"'rotary_pct'", "rotary dims for head_dim 8"});
}

TEST_F(EditedConfig, InternLM2Errors) {
  expect_error("internlm2", {{"num_key_value_heads", 3}}, {"'num_key_value_heads'", "does not divide"});
  expect_error("internlm2", {{"rope_scaling", {{"type", "yarn"}}}}, {"'yarn' is not supported"});
  // modeling_internlm2.py's _init_rope knows linear and dynamic only.
  expect_error("internlm2", {{"rope_scaling", {{"type", "yarn"}, {"factor", 4.0}}}},
               {"'rope_scaling'", "'yarn' is not supported"});
  expect_error("internlm2", {{"rope_scaling", {{"type", "llama3"}, {"factor", 8.0}}}},
               {"'rope_scaling'", "'llama3' is not supported"});
}

TEST_F(EditedConfig, ChatGLMErrors) {
  expect_error("chatglm", {{"multi_query_group_num", 3}},
               {"'multi_query_group_num'", "3 does not divide num_attention_heads (4)"});
  expect_error("chatglm", {{"rmsnorm", false}}, {"'rmsnorm'", "not supported"});
  expect_error("chatglm", {{"apply_residual_connection_post_layernorm", true}},
               {"'apply_residual_connection_post_layernorm'"});
  expect_error("chatglm", {{"ffn_hidden_size", nullptr}}, {"'ffn_hidden_size'", "missing"});
}

TEST(FamilyShards, NAboveTheQueryHeadsNamesTheLimit) {
  for (const auto& [name, heads] : {std::pair{"qwen_v1", 8}, {"internlm2", 8}, {"chatglm", 4}}) {
    const ModelConfig c = fixture(name);
    EXPECT_NO_THROW(rank_shape(c, 3, 2)) << name;  // not dividing the heads: an uneven split
    try {
      rank_shape(c, heads + 1, 0);
      ADD_FAILURE() << name;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("size " + std::to_string(heads + 1) + " exceeds the " +
                                           std::to_string(heads) + " query heads"),
                std::string::npos)
          << e.what();
    }
  }
}

// Rows a rank reads of a fused tensor, in order: the plan's table made visible.
std::vector<parallel::Range> rows_of(const std::vector<WeightShard>& plan, const std::string& name) {
  for (const WeightShard& w : plan) {
    if (w.name == name) {
      std::vector<parallel::Range> rows;
      for (const SourceBlock& b : w.blocks) rows.push_back(b.rows);
      return rows;
    }
  }
  ADD_FAILURE() << "no weight " << name;
  return {};
}

TEST(FamilyShards, InternLM2ReadsItsGroupRowsStraightFromWqkv) {
  const ModelConfig c = fixture("internlm2");
  // 8 q heads, 2 KV heads, head_dim 8: a group is [q0..q3, k, v] = 48 rows. N=4, rank 3 holds q
  // heads 6, 7 (group 1, rows 48 + 16 .. 48 + 32) and KV head 1 (k at 80, v at 88): one
  // contiguous run, read in place.
  const auto plan = plan_weights(c, internlm2_architecture(), rank_shape(c, 4, 3));
  using parallel::Range;
  EXPECT_EQ(rows_of(plan, "layers.0.qkv"), (std::vector<Range>{{64, 96}}));
  EXPECT_EQ(rows_of(plan, "layers.1.qkv_bias"), (std::vector<Range>{{64, 96}}));
  // Rank 1 of 4: q heads 2, 3 of group 0 (rows 16..32), then that group's k and v (32..48).
  const auto plan1 = plan_weights(c, internlm2_architecture(), rank_shape(c, 4, 1));
  EXPECT_EQ(rows_of(plan1, "layers.0.qkv"), (std::vector<Range>{{16, 48}}));
}

TEST(FamilyShards, ChatGLMWithoutMultiQueryReadsItsHeadsPerHead) {
  const ModelConfig c = fixture("chatglm_mha");
  // 4 heads of 16: head h is rows [48h, 48h + 48) = q, k, v. Rank 1 of 2 holds heads 2, 3:
  // q at 96 and 144, then k at 112 and 160, then v at 128 and 176.
  const auto plan = plan_weights(c, chatglm_architecture(), rank_shape(c, 2, 1));
  using parallel::Range;
  const std::vector<Range> rows = {{96, 112}, {144, 160}, {112, 128}, {160, 176}, {128, 144},
                                   {176, 192}};
  EXPECT_EQ(rows_of(plan, "layers.0.qkv"), rows);
  EXPECT_EQ(rows_of(plan, "layers.1.qkv_bias"), rows);
}

TEST(FamilyShards, ChatGLMReplicatesItsTwoGroupsAtFourRanksAndSplitsGateUp) {
  const ModelConfig c = fixture("chatglm");
  // 4 q heads, 2 groups, head_dim 16: [q 0..64; k 64..96; v 96..128]. Rank 1 of 4: q head 1,
  // group 0 (shared with rank 0).
  const auto plan = plan_weights(c, chatglm_architecture(), rank_shape(c, 4, 1));
  using parallel::Range;
  EXPECT_EQ(rows_of(plan, "layers.0.qkv"), (std::vector<Range>{{16, 32}, {64, 80}, {96, 112}}));
  // dense_h_to_4h is [gate 0..112; up 112..224]; rank 1 of 4 holds units 28..56 of each.
  EXPECT_EQ(rows_of(plan, "layers.0.gate_up"), (std::vector<Range>{{28, 56}, {140, 168}}));
}

}  // namespace
}  // namespace tpserve::runtime
