// Qwen2-MoE: the adapter's config reader (fixture and the qwen2-57b-a14b preset), the routing
// against hand-computed softmax / top-k, the sparse layers' weight plan at N = 2, and N leaving a
// rank without expert units.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <string>

#include "common/error.h"
#include "runtime/config/model_config.h"
#include "runtime/families/architecture.h"
#include "runtime/families/load_config.h"
#include "runtime/model/moe.h"
#include "runtime/model/moe_plan.h"
#include "runtime/model/weight_plan.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

ModelConfig moe_fixture() { return load_model_config(testing::fixtures_dir() / "qwen2_moe"); }

TEST(MoeConfig, FixtureHasOneDenseLayerFromMlpOnlyLayers) {
  const ModelConfig c = moe_fixture();
  EXPECT_EQ(c.architecture, "Qwen2MoeForCausalLM");
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias || c.mlp_bias);
  EXPECT_EQ(c.moe.num_experts, 8);
  EXPECT_EQ(c.moe.experts_per_token, 2);
  EXPECT_EQ(c.moe.expert_intermediate_size, 16);
  EXPECT_EQ(c.moe.shared_expert_intermediate_size, 32);
  EXPECT_FALSE(c.moe.norm_topk_prob);
  EXPECT_EQ(c.moe.sparse_layers, (std::vector<bool>{true, true, false, true}));  // mlp_only [2]
  EXPECT_EQ(c.intermediate_size, 96);  // the dense layer's MLP
}

TEST(MoeConfig, Qwen2_57bPresetParses) {
  const auto preset = testing::fixtures_dir().parent_path().parent_path() / "configs" / "presets" /
                      "qwen2-57b-a14b.json";
  const ModelConfig c = read_config_file(preset);
  EXPECT_EQ(c.num_layers, 28);
  EXPECT_EQ(c.num_heads, 28);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.moe.num_experts, 64);
  EXPECT_EQ(c.moe.experts_per_token, 8);
  EXPECT_EQ(c.moe.expert_intermediate_size, 2560);
  EXPECT_EQ(c.moe.shared_expert_intermediate_size, 20480);
  EXPECT_EQ(c.moe.sparse_layers, std::vector<bool>(28, true));
  EXPECT_EQ(c.torch_dtype, DType::kBF16);
}

TEST(MoeConfig, DecoderSparseStepAndBadFieldsAreRead) {
  const std::string base = R"("architectures": ["Qwen2MoeForCausalLM"], "hidden_size": 64,
      "intermediate_size": 96, "vocab_size": 512, "num_hidden_layers": 4,
      "num_attention_heads": 8, "num_key_value_heads": 2, "num_experts": 8,
      "moe_intermediate_size": 16, "shared_expert_intermediate_size": 32)";
  const auto write = [&](const std::string& extra) {
    const auto file = std::filesystem::temp_directory_path() / "tpserve_moe_config.json";
    std::ofstream(file) << "{" << base << extra << "}";
    return file;
  };
  EXPECT_EQ(read_config_file(write(R"(, "decoder_sparse_step": 2)")).moe.sparse_layers,
            (std::vector<bool>{false, true, false, true}));
  EXPECT_EQ(read_config_file(write(R"(, "num_experts_per_tok": 3)")).moe.experts_per_token, 3);
  try {
    read_config_file(write(R"(, "num_experts_per_tok": 9)"));
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("field 'num_experts_per_tok': 9 exceeds num_experts (8)"),
              std::string::npos) << e.what();
  }
  try {
    read_config_file(write(R"(, "mlp_only_layers": [4])"));
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("field 'mlp_only_layers'"), std::string::npos) << e.what();
  }
}

TEST(MoeRouting, SoftmaxTopKMatchesHandComputation) {
  const float logits[4] = {1.0f, 3.0f, 2.0f, 0.0f};
  double sum = 0;
  for (float l : logits) sum += std::exp(l);
  TokenRoute route;
  route_token(logits, 4, 2, false, route);
  EXPECT_EQ(route.experts, (std::vector<int>{1, 2}));
  EXPECT_NEAR(route.weights[0], std::exp(3.0) / sum, 1e-7);
  EXPECT_NEAR(route.weights[1], std::exp(2.0) / sum, 1e-7);
  route_token(logits, 4, 2, true, route);  // norm_topk_prob: the two weights sum to 1
  EXPECT_NEAR(route.weights[0], std::exp(3.0) / (std::exp(3.0) + std::exp(2.0)), 1e-7);
  EXPECT_NEAR(route.weights[0] + route.weights[1], 1.0f, 1e-7);
}

TEST(MoeRouting, TiesGoToTheLowestExpertIndex) {
  const float logits[5] = {0.5f, 2.0f, 0.5f, 2.0f, 2.0f};
  TokenRoute route;
  route_token(logits, 5, 2, false, route);
  EXPECT_EQ(route.experts, (std::vector<int>{1, 3}));
  route_token(logits, 5, 4, false, route);
  EXPECT_EQ(route.experts, (std::vector<int>{1, 3, 4, 0}));
}

TEST(MoePlan, ExpertsShardLikeTheDenseMlpAndTheRouterIsReplicated) {
  const ModelConfig c = moe_fixture();
  const RankShape s = rank_shape(c, 2, 1);
  EXPECT_EQ(s.expert_intermediate, (parallel::Range{8, 16}));
  EXPECT_EQ(s.shared_intermediate, (parallel::Range{16, 32}));
  const auto plan = plan_weights(c, qwen2_moe_architecture(), s);
  const auto find = [&](const std::string& name) -> const WeightShard& {
    for (const WeightShard& w : plan) {
      if (w.name == name) return w;
    }
    ADD_FAILURE() << "no " << name;
    return plan.front();
  };
  const WeightShard& router = find("layers.0.router");
  EXPECT_EQ(router.kind, parallel::ShardKind::kReplicated);
  EXPECT_EQ(router.rows, 9);  // 8 experts + the shared expert's gate
  ASSERT_EQ(router.blocks.size(), 2u);
  EXPECT_EQ(router.blocks[0].tensor, "model.layers.0.mlp.gate.weight");
  EXPECT_EQ(router.blocks[1].tensor, "model.layers.0.mlp.shared_expert_gate.weight");
  const WeightShard& gate_up = find("layers.3.experts.7.gate_up");
  EXPECT_EQ(gate_up.kind, parallel::ShardKind::kColumn);
  EXPECT_EQ(gate_up.rows, 16);
  ASSERT_EQ(gate_up.blocks.size(), 2u);
  EXPECT_EQ(gate_up.blocks[0].tensor, "model.layers.3.mlp.experts.7.gate_proj.weight");
  EXPECT_EQ(gate_up.blocks[1].tensor, "model.layers.3.mlp.experts.7.up_proj.weight");
  EXPECT_EQ(gate_up.blocks[1].rows, (parallel::Range{8, 16}));
  const WeightShard& down = find("layers.3.experts.7.down");
  EXPECT_EQ(down.kind, parallel::ShardKind::kRow);
  EXPECT_EQ(down.cols, 8);
  EXPECT_EQ(down.blocks[0].cols, (parallel::Range{8, 16}));
  EXPECT_EQ(find("layers.1.shared_down").blocks[0].tensor,
            "model.layers.1.mlp.shared_expert.down_proj.weight");
  EXPECT_EQ(find("layers.2.gate_up").blocks[0].tensor, "model.layers.2.mlp.gate_proj.weight");
  for (const WeightShard& w : plan) {
    EXPECT_NE(w.name, "layers.0.gate_up");  // sparse layers carry no dense MLP
    EXPECT_EQ(w.name.find("layers.2.experts"), std::string::npos);
  }
}

TEST(MoePlan, TooManyRanksForTheExpertWidthIsAClearError) {
  ModelConfig c = moe_fixture();
  c.num_heads = 32;  // let the heads fit, so the expert width is what fails
  c.num_kv_heads = 2;
  c.moe.expert_intermediate_size = 4;
  try {
    rank_shape(c, 8, 0);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "tensor-parallel size 8 exceeds the 4 units of moe_intermediate_size"),
              std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tpserve::runtime
