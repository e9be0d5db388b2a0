// GGUF's Q8_0 / Q4_0 / Q4_1 weights loaded packed (runtime/model/quantized_load.h, QuantMethod::kGguf)
// from the gguf_llama_q4 / gguf_qwen2_q8 fixtures (gguf-py wrote them): which shards stay packed,
// their weights against the file's values decoded to floats (read_f32, itself checked against
// gguf-py), the plan's byte count, and the TP sizes refused where a cut would fall inside a block.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <optional>

#include "common/dtype.h"
#include "common/error.h"
#include "runtime/families/architecture.h"
#include "runtime/model/checkpoint_source.h"
#include "runtime/model/quantized_load.h"
#include "runtime/model/weight_plan.h"
#include "runtime/model/weights.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

std::filesystem::path fixture(const char* name) {
  return testing::fixtures_dir() / name / "model.gguf";
}

const WeightShard& find_shard(const std::vector<WeightShard>& plan, const std::string& name) {
  for (const WeightShard& w : plan) {
    if (w.name == name) return w;
  }
  throw std::runtime_error("no shard " + name);
}

TEST(GgufPackedLoad, ConfigNamesEveryPackedTensor) {
  const ModelConfig c = read_model_config(fixture("gguf_llama_q4"));
  EXPECT_EQ(c.quant.method, QuantMethod::kGguf);
  EXPECT_EQ(c.quant.group_size, 32);
  EXPECT_EQ(c.quant.packed_bits_of("model.layers.0.self_attn.q_proj.weight"), 4);  // Q4_0
  EXPECT_EQ(c.quant.packed_bits_of("model.layers.0.self_attn.v_proj.weight"), 8);  // Q8_0
  EXPECT_EQ(c.quant.packed_bits_of("model.layers.0.mlp.up_proj.weight"), 4);       // Q4_1
  EXPECT_EQ(c.quant.packed_bits_of("model.layers.1.mlp.down_proj.weight"), 0);     // F16
  EXPECT_EQ(c.quant.packed_bits_of("lm_head.weight"), 8);
  EXPECT_EQ(c.quant.packed_bits_of("model.layers.0.input_layernorm.weight"), 0);
  // A float GGUF file has no quantization at all.
  EXPECT_FALSE(read_model_config(testing::fixtures_dir() / "gguf" / "llama_gqa.gguf").quant.enabled());
}

// Checkpoint::read_stored: a GGUF float tensor's block as stored (F16 here, F32 norms), in the
// view's row order (q/k rows), widens to read_f32's values; a packed tensor is refused by name.
TEST(GgufPackedLoad, ReadStoredIsReadF32BeforeWidening) {
  const ModelConfig c = read_model_config(fixture("gguf_llama_q4"));
  const auto checkpoint = open_checkpoint(c);
  for (const char* name :
       {"model.layers.1.mlp.down_proj.weight", "model.layers.1.self_attn.q_proj.weight",
        "model.layers.0.input_layernorm.weight"}) {
    const std::optional<DType> dtype = checkpoint->stored_float_dtype(name);
    if (!dtype) continue;  // q_proj of layer 1 may be packed in this file
    const TensorEntry& entry = checkpoint->tensor(name);
    const int64_t rows = entry.rows(), cols = entry.cols();
    // A block off the corners: rows 1..rows-1, cols 1..cols (a vector has one column).
    const int64_t c0 = cols > 1 ? 1 : 0;
    const int64_t n = (rows - 1) * (cols - c0);
    std::vector<std::byte> stored(static_cast<size_t>(n * dtype_size(*dtype)));
    checkpoint->read_stored(name, 1, rows, c0, cols, stored.data());
    std::vector<float> widened(static_cast<size_t>(n)), want(static_cast<size_t>(n));
    convert_to_f32(*dtype, stored.data(), widened.data(), n);
    checkpoint->read_f32(name, 1, rows, c0, cols, want.data());
    ASSERT_EQ(std::memcmp(widened.data(), want.data(), want.size() * 4), 0) << name;
  }
  EXPECT_EQ(checkpoint->stored_float_dtype("model.layers.1.mlp.down_proj.weight"), DType::kF16);
  EXPECT_EQ(checkpoint->stored_float_dtype("model.layers.0.self_attn.q_proj.weight"), std::nullopt);
  std::vector<std::byte> out(64);
  try {
    checkpoint->read_stored("model.layers.0.self_attn.q_proj.weight", 0, 1, 0, 32, out.data());
    FAIL() << "a Q4_0 tensor was read as stored";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnimplemented);
    EXPECT_NE(std::string(e.what()).find("model.layers.0.self_attn.q_proj.weight"),
              std::string::npos) << e.what();
  }
}

// Every packed shard of every rank at TP 1-4 equals the file's decoded floats (q/k rows in
// rotate_half order), and shards that are not all packed load as floats.
TEST(GgufPackedLoad, ShardsEqualTheDecodedFile) {
  for (const char* name : {"gguf_llama_q4", "gguf_qwen2_q8"}) {
    const ModelConfig c = read_model_config(fixture(name));
    const auto checkpoint = open_checkpoint(c);
    const Architecture& arch = *find_architecture(c.architecture);
    for (int tp = 1; tp <= 4; ++tp) {
      for (int rank = 0; rank < tp; ++rank) {
        const std::vector<WeightShard> plan = plan_weights(c, arch, rank_shape(c, tp, rank));
        validate_weights(*checkpoint, plan, c.quant);
        int packed = 0;
        for (const WeightShard& w : plan) {
          if (!shard_is_quantized(*checkpoint, c.quant, w)) continue;
          ++packed;
          const kernels::QuantizedHostMatrix m = read_quantized_shard(*checkpoint, c.quant, w);
          ASSERT_EQ(m.rows(), w.rows);
          ASSERT_EQ(m.cols(), w.cols);
          EXPECT_EQ(m.bits(), planned_bits(w, c.quant)) << w.name;
          std::vector<float> want(static_cast<size_t>(w.numel()), 0.0f);
          float* cursor = want.data();
          for (const SourceBlock& b : w.blocks) {
            checkpoint->read_f32(b.tensor, b.rows.begin, b.rows.end, b.cols.begin, b.cols.end, cursor);
            cursor += b.rows.size() * b.cols.size();
          }
          const std::vector<float> got = m.dequantize();
          for (size_t i = 0; i < got.size(); ++i) {
            // Q4_1's d q + m: one rounding (FMA) here, two in the decoder.
            ASSERT_NEAR(got[i], want[i], 2e-7f * std::max(1.0f, std::abs(want[i])))
                << name << " tp " << tp << " rank " << rank << " " << w.name << " at " << i;
          }
        }
        // llama: qkv, o, gate_up of both layers, layer 0's down, lm_head (8); qwen2: both downs
        // too and the tied lm_head (9).
        EXPECT_EQ(packed, std::string(name) == "gguf_llama_q4" ? 8 : 9) << name << " tp " << tp;
      }
    }
    const std::vector<WeightShard> plan = plan_weights(c, arch, rank_shape(c, 1, 0));
    EXPECT_EQ(planned_bits(find_shard(plan, "layers.0.qkv"), c.quant),
              std::string(name) == "gguf_llama_q4" ? 8 : 4);  // llama: q, k Q4_0 with v Q8_0
  }
}

TEST(GgufPackedLoad, PlanCountsPackedBytes) {
  const ModelConfig c = read_model_config(fixture("gguf_llama_q4"));
  const std::vector<WeightShard> plan =
      plan_weights(c, *find_architecture(c.architecture), rank_shape(c, 2, 1));
  // gate_up: 256 rows of 128 Q4_1 inputs: 64 bytes of codes + a scale and a min per group of 32.
  EXPECT_EQ(shard_bytes(find_shard(plan, "layers.0.gate_up"), c.quant, 4), 256 * 64 + 2 * 256 * 4 * 4);
  // Layer 1's down is F16 in the file: floats. lm_head: 256 of 512 Q8_0 rows.
  EXPECT_EQ(shard_bytes(find_shard(plan, "layers.1.down"), c.quant, 4), 128 * 128 * 4);
  EXPECT_EQ(shard_bytes(find_shard(plan, "lm_head"), c.quant, 4), 256 * 128 + 2 * 256 * 4 * 4);
}

TEST(GgufPackedLoad, CutsInsideABlockAreRefusedNamingValidTpSizes) {
  // 8 heads of 16: o_proj's input may be cut only after an even number of heads.
  ModelConfig c = read_model_config(fixture("gguf_llama_q4"));
  c.num_heads = 8;
  c.head_dim = 16;
  EXPECT_NO_THROW(rank_shape(c, 2, 1));
  try {
    rank_shape(c, 3, 0);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("model.gguf: 8-bit gguf with group_size 32 cannot be split over 3 ranks"),
              std::string::npos) << what;
    EXPECT_TRUE(what.ends_with("valid TP sizes: 1, 2, 4")) << what;
  }
}

}  // namespace
}  // namespace tpserve::runtime
