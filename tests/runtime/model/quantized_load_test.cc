// GPTQ and AWQ tensors read into the quantized representation, against words packed by hand from
// the formats' definitions (AutoGPTQ QuantLinear.pack: input k of a word at bits 4 (k % 8), zero
// stored minus one; AutoAWQ from_linear: output order_map[i] = [0, 2, 4, 6, 1, 3, 5, 7][i] at bits
// 4 i), the shard cuts the plan refuses, and the loader's errors. The published code's own
// packing is checked end to end by the gptq_* / awq_* fixtures (model_mpitest.cc).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "runtime/families/load_config.h"
#include "runtime/model/quantized_load.h"
#include "runtime/model/weight_plan.h"
#include "runtime/model/weights.h"
#include "tests/runtime/formats/safetensors_writer.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

// An 8 x 8 linear "x" (one group, 4 bits): code(k, n) = (k + 3 n) % 16, zero(n) = n + 1,
// scale(n) = 0.5 + n / 8.
uint32_t code(int k, int n) { return static_cast<uint32_t>((k + 3 * n) % 16); }
float scale(int n) { return 0.5f + static_cast<float>(n) / 8.0f; }
float expected_weight(int n, int k) { return scale(n) * (static_cast<float>(code(k, n)) - (n + 1)); }

WeightShard shard_of(parallel::Range rows, parallel::Range cols) {
  WeightShard w;
  w.name = "x";
  w.linear = true;
  w.rows = rows.size();
  w.cols = cols.size();
  w.blocks.push_back({"x.weight", 8, 8, "[8, 8]", rows, cols});
  return w;
}

std::vector<float> scales() {
  std::vector<float> s;
  for (int n = 0; n < 8; ++n) s.push_back(scale(n));
  return s;
}

void check(const kernels::QuantizedHostMatrix& m, parallel::Range rows, parallel::Range cols) {
  ASSERT_EQ(m.rows(), rows.size());
  ASSERT_EQ(m.cols(), cols.size());
  for (int64_t n = rows.begin; n < rows.end; ++n) {
    for (int64_t k = cols.begin; k < cols.end; ++k) {
      EXPECT_NEAR(m.weight(n - rows.begin, k - cols.begin),
                  expected_weight(static_cast<int>(n), static_cast<int>(k)), 1e-6)
          << "n " << n << " k " << k;
    }
  }
}

TEST(QuantizedLoad, GptqWordsByHand) {
  testing::ScratchDir scratch("quantized_load_gptq");
  std::vector<int32_t> qweight(8, 0);  // [in / 8, out] = [1, 8]
  uint32_t zeros = 0;                  // [groups, out / 8] = [1, 1]
  for (int n = 0; n < 8; ++n) {
    uint32_t word = 0;
    for (int k = 0; k < 8; ++k) word |= code(k, n) << (4 * k);
    qweight[static_cast<size_t>(n)] = static_cast<int32_t>(word);
    zeros |= static_cast<uint32_t>(n) << (4 * n);  // zero - 1 ("gptq" format)
  }
  testing::SafetensorsWriter w;
  w.add_i32("x.qweight", {1, 8}, qweight);
  w.add_i32("x.qzeros", {1, 1}, {static_cast<int32_t>(zeros)});
  w.add_f32("x.scales", {1, 8}, scales());
  w.add_i32("x.g_idx", {8}, std::vector<int32_t>(8, 0));
  w.write(scratch.path() / "model.safetensors");
  const auto checkpoint = Checkpoint::open(scratch.path());
  QuantConfig q;
  q.method = QuantMethod::kGptq;
  q.bits = 4;
  q.group_size = 0;
  q.zero_offset = 1;
  for (const auto& [rows, cols] : {std::pair<parallel::Range, parallel::Range>{{0, 8}, {0, 8}},
                                   {{0, 8}, {2, 6}}}) {  // a row shard in the middle of a word
    const WeightShard shard = shard_of(rows, cols);
    EXPECT_TRUE(shard_is_quantized(*checkpoint, q, shard));
    check(read_quantized_shard(*checkpoint, q, shard), rows, cols);
  }
  // Without a quantization config the qweight is an error naming it, not a silent float read.
  EXPECT_THROW(shard_is_quantized(*checkpoint, QuantConfig{}, shard_of({0, 8}, {0, 8})), Error);
}

TEST(QuantizedLoad, AwqWordsByHandInAwqOrder) {
  testing::ScratchDir scratch("quantized_load_awq");
  std::vector<int32_t> qweight(8, 0);  // [in, out / 8] = [8, 1]
  uint32_t zeros = 0;
  for (int k = 0; k < 8; ++k) {
    uint32_t word = 0;
    for (int i = 0; i < 8; ++i) word |= code(k, kAwqOrder[i]) << (4 * i);
    qweight[static_cast<size_t>(k)] = static_cast<int32_t>(word);
  }
  for (int i = 0; i < 8; ++i) zeros |= static_cast<uint32_t>(kAwqOrder[i] + 1) << (4 * i);
  testing::SafetensorsWriter w;
  w.add_i32("x.qweight", {8, 1}, qweight);
  w.add_i32("x.qzeros", {1, 1}, {static_cast<int32_t>(zeros)});
  w.add_f16("x.scales", {1, 8}, scales());  // exact in float16
  w.write(scratch.path() / "model.safetensors");
  const auto checkpoint = Checkpoint::open(scratch.path());
  QuantConfig q;
  q.method = QuantMethod::kAwq;
  q.bits = 4;
  q.group_size = 8;
  const WeightShard shard = shard_of({0, 8}, {0, 8});
  validate_quantized_shard(*checkpoint, q, shard);
  check(read_quantized_shard(*checkpoint, q, shard), {0, 8}, {0, 8});
  // A group size the tensors do not have: scales / qzeros shapes are named.
  q.group_size = 4;
  try {
    validate_quantized_shard(*checkpoint, q, shard);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'x.qzeros' has shape [1, 1], expected [2, 1]"),
              std::string::npos) << e.what();
  }
}

ModelConfig quantized_llama(int64_t head_dim, int64_t group_size) {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.num_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = static_cast<int>(head_dim);
  c.hidden_size = 8 * head_dim;
  c.intermediate_size = 256;
  c.vocab_size = 64;
  c.num_layers = 1;
  c.quant.method = QuantMethod::kGptq;
  c.quant.bits = 4;
  c.quant.group_size = group_size;
  c.quant.file = "quantize_config.json";
  return c;
}

TEST(QuantizedLoad, ShardCutsInsideAGroupAreRefusedNamingValidTpSizes) {
  // 8 heads of 8, groups of 32: a rank may start o_proj's input only at a multiple of 4 heads.
  const ModelConfig c = quantized_llama(8, 32);
  EXPECT_EQ(intermediate_align(c), 32);
  EXPECT_NO_THROW(rank_shape(c, 2, 1));
  try {
    rank_shape(c, 4, 0);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("quantize_config.json: 4-bit gptq with group_size 32 "
                                         "cannot be split over 4 ranks"),
              std::string::npos) << e.what();
    EXPECT_TRUE(std::string(e.what()).ends_with("valid TP sizes: 1, 2")) << e.what();
  }
  // Act-order cuts need only whole words of 8 input columns: every TP up to the heads fits.
  ModelConfig act_order = c;
  act_order.quant.desc_act = true;
  for (int tp = 1; tp <= 8; ++tp) EXPECT_NO_THROW(rank_shape(act_order, tp, 0)) << tp;
  // Heads of 128 cut on group boundaries at any TP; the MLP's 256 / 128 = 2 groups feed 2 ranks.
  const ModelConfig wide = quantized_llama(128, 128);
  EXPECT_NO_THROW(rank_shape(wide, 2, 0));
  try {
    rank_shape(wide, 3, 0);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_TRUE(std::string(e.what()).ends_with("intermediate_size 256); valid TP sizes: 1, 2"))
        << e.what();
  }
}

TEST(QuantizedLoad, PlanCountsPackedBytes) {
  const ModelConfig c = quantized_llama(8, 32);
  WeightShard down = shard_of({0, 64}, {0, 256});
  down.rows = 64;
  down.cols = 256;
  down.blocks[0].full_cols = 256;
  // 64 rows x 128 bytes of codes + scale and min per (row, group of 32) in 4-byte floats.
  EXPECT_EQ(shard_bytes(down, c.quant, 4), 64 * 128 + 2 * 64 * 8 * 4);
  down.linear = false;
  EXPECT_EQ(shard_bytes(down, c.quant, 4), 64 * 256 * 4);
}

TEST(QuantizedLoad, MissingQuantizationSettingsNameTheTensor) {
  testing::ScratchDir scratch("quantized_load_no_config");
  for (const auto& entry : std::filesystem::directory_iterator(
           testing::fixtures_dir() / "gptq_llama_act_order")) {
    if (entry.path().filename() != "quantize_config.json") {
      std::filesystem::copy(entry.path(), scratch.path() / entry.path().filename());
    }
  }
  const ModelConfig c = load_model_config(scratch.path());
  const auto checkpoint = Checkpoint::open(scratch.path());
  try {
    validate_weights(*checkpoint, plan_weights(c, llama_architecture(), rank_shape(c, 1, 0)),
                     c.quant);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'model.layers.0.self_attn.q_proj.qweight' is "
                                         "quantized but neither"),
              std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tpserve::runtime
