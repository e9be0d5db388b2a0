// The per-rank weight plan and loader on synthetic checkpoints: shard shapes for a real layout,
// the exact rows/columns each rank loads, and the validation errors that name the tensor.
#include <gtest/gtest.h>

#include <numeric>

#include "common/error.h"
#include "kernels/ops.h"
#include "runtime/families/architecture.h"
#include "runtime/model/weights.h"
#include "tests/runtime/formats/safetensors_writer.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

// A two-layer-free LLaMA shape: 4 query / 2 KV heads of dim 2, hidden 4, intermediate 6, vocab 5.
ModelConfig tiny_llama(int layers = 1) {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.hidden_size = 4;
  c.intermediate_size = 6;
  c.vocab_size = 5;
  c.num_layers = layers;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 2;
  return c;
}

// Tensor values encode their position: value = base + row * cols + col.
std::vector<float> iota(int64_t n, float base) {
  std::vector<float> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), base);
  return v;
}

void write_tiny_llama(const std::filesystem::path& dir, DType qkv_dtype = DType::kF32,
                      int64_t gate_rows = 6) {
  testing::SafetensorsWriter w;
  w.add_f32("model.embed_tokens.weight", {5, 4}, iota(20, 0));
  w.add_f32("model.norm.weight", {4}, iota(4, 100));
  w.add_f32("lm_head.weight", {5, 4}, iota(20, 200));
  const std::string p = "model.layers.0.";
  w.add_f32(p + "input_layernorm.weight", {4}, iota(4, 300));
  w.add_f32(p + "post_attention_layernorm.weight", {4}, iota(4, 400));
  if (qkv_dtype == DType::kI32) {
    w.add_i32(p + "self_attn.q_proj.weight", {8, 4}, std::vector<int32_t>(32, 1));
  } else {
    w.add_f32(p + "self_attn.q_proj.weight", {8, 4}, iota(32, 1000));
  }
  w.add_f32(p + "self_attn.k_proj.weight", {4, 4}, iota(16, 2000));
  w.add_f32(p + "self_attn.v_proj.weight", {4, 4}, iota(16, 3000));
  w.add_f32(p + "self_attn.o_proj.weight", {4, 8}, iota(32, 4000));
  w.add_f32(p + "mlp.gate_proj.weight", {gate_rows, 4}, iota(gate_rows * 4, 5000));
  w.add_f32(p + "mlp.up_proj.weight", {6, 4}, iota(24, 6000));
  w.add_f32(p + "mlp.down_proj.weight", {4, 6}, iota(24, 7000));
  w.write(dir / "model.safetensors");
}

std::vector<float> loaded(const WeightStore& store, const std::string& name, int64_t n) {
  const auto* data = static_cast<const float*>(store.get(name));
  return std::vector<float>(data, data + n);
}

TEST(WeightPlan, Qwen2ShardShapesAtTp4) {
  ModelConfig c = tiny_llama();
  c.architecture = "Qwen2ForCausalLM";
  c.hidden_size = 96, c.intermediate_size = 128, c.vocab_size = 512;
  c.num_heads = 12, c.num_kv_heads = 2, c.head_dim = 8, c.qkv_bias = true;
  c.tie_word_embeddings = true;
  const RankShape shape = rank_shape(c, 4, 1);
  std::map<std::string, WeightShard> by_name;
  for (WeightShard& w : plan_weights(c, qwen2_architecture(), shape)) by_name[w.name] = w;
  EXPECT_EQ(by_name.count("lm_head"), 0u);  // tied: the embedding shard serves as lm_head
  EXPECT_EQ(by_name["embed"].rows, 128);
  EXPECT_EQ(by_name["embed"].kind, parallel::ShardKind::kVocab);
  // 3 query heads + their one KV head (replicated on ranks 0 and 1) for k and v.
  EXPECT_EQ(by_name["layers.0.qkv"].rows, (3 + 2) * 8);
  EXPECT_EQ(by_name["layers.0.qkv"].cols, 96);
  EXPECT_EQ(by_name["layers.0.qkv_bias"].rows, (3 + 2) * 8);
  EXPECT_EQ(by_name["layers.0.o"].rows, 96);
  EXPECT_EQ(by_name["layers.0.o"].cols, 24);
  EXPECT_EQ(by_name["layers.0.o"].kind, parallel::ShardKind::kRow);
  EXPECT_EQ(by_name["layers.0.gate_up"].rows, 64);
  EXPECT_EQ(by_name["layers.0.down"].cols, 32);
  EXPECT_EQ(by_name["layers.0.attn_norm"].kind, parallel::ShardKind::kReplicated);
}

TEST(WeightStore, EachRankLoadsItsOwnRowsAndColumns) {
  testing::ScratchDir dir("weights");
  write_tiny_llama(dir.path());
  auto checkpoint = Checkpoint::open(dir.path());
  auto backend = kernels::make_cpu_backend();
  const ModelConfig c = tiny_llama();
  // Rank 1 of 2: q heads 2,3 (q rows 4..7), KV head 1 (k/v rows 2..3), intermediate units 3..5,
  // vocab rows 3..4 of 5 padded to 3.
  WeightStore store;
  store.load(*checkpoint, plan_weights(c, llama_architecture(), rank_shape(c, 2, 1)), *backend);
  std::vector<float> qkv;
  for (float v : iota(16, 1000 + 16)) qkv.push_back(v);  // q rows 4..7
  for (float v : iota(8, 2000 + 8)) qkv.push_back(v);    // k rows 2..3
  for (float v : iota(8, 3000 + 8)) qkv.push_back(v);    // v rows 2..3
  EXPECT_EQ(loaded(store, "layers.0.qkv", 32), qkv);
  // o_proj [4, 8]: columns 4..7 of every row.
  std::vector<float> o;
  for (int row = 0; row < 4; ++row) {
    for (int col = 4; col < 8; ++col) o.push_back(4000.0f + row * 8 + col);
  }
  EXPECT_EQ(loaded(store, "layers.0.o", 16), o);
  std::vector<float> gate_up = iota(12, 5000 + 12);
  for (float v : iota(12, 6000 + 12)) gate_up.push_back(v);
  EXPECT_EQ(loaded(store, "layers.0.gate_up", 24), gate_up);
  std::vector<float> down;
  for (int row = 0; row < 4; ++row) {
    for (int col = 3; col < 6; ++col) down.push_back(7000.0f + row * 6 + col);
  }
  EXPECT_EQ(loaded(store, "layers.0.down", 12), down);
  std::vector<float> embed = iota(8, 12);  // vocab rows 3, 4
  embed.resize(12, 0.0f);                  // one padding row
  EXPECT_EQ(loaded(store, "embed", 12), embed);
  EXPECT_EQ(loaded(store, "final_norm", 4), iota(4, 100));
}

class WeightValidation : public ::testing::Test {
 protected:
  std::string error_of(const std::function<void(const std::filesystem::path&)>& write) {
    testing::ScratchDir dir("weights-bad");
    write(dir.path());
    auto checkpoint = Checkpoint::open(dir.path());
    const ModelConfig c = tiny_llama();
    try {
      validate_weights(*checkpoint, plan_weights(c, llama_architecture(), rank_shape(c, 2, 0)));
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
};

TEST_F(WeightValidation, NonFloatDtypeNamesTheTensor) {
  const std::string message = error_of([](const auto& d) { write_tiny_llama(d, DType::kI32); });
  EXPECT_NE(message.find("'model.layers.0.self_attn.q_proj.weight' has dtype I32"), std::string::npos)
      << message;
}

TEST_F(WeightValidation, WrongShapeNamesBothShapes) {
  const std::string message =
      error_of([](const auto& d) { write_tiny_llama(d, DType::kF32, 7); });
  EXPECT_NE(message.find("'model.layers.0.mlp.gate_proj.weight' has shape [7, 4], expected [6, 4]"),
            std::string::npos)
      << message;
}

TEST_F(WeightValidation, MissingTensorIsNotFound) {
  testing::ScratchDir dir("weights-missing");
  testing::SafetensorsWriter().add_f32("model.norm.weight", {4}, iota(4, 0)).write(
      dir.path() / "model.safetensors");
  auto checkpoint = Checkpoint::open(dir.path());
  const ModelConfig c = tiny_llama();
  try {
    validate_weights(*checkpoint, plan_weights(c, llama_architecture(), rank_shape(c, 1, 0)));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("'model.embed_tokens.weight'"), std::string::npos);
  }
}

}  // namespace
}  // namespace tpserve::runtime
