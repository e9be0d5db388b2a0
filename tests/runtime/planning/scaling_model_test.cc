// The TP scaling model (runtime/planning/scaling_model.h) against hand-computed collective costs, its
// byte count against the memory plan, and monotonic sanity.
#include "runtime/planning/scaling_model.h"

#include <gtest/gtest.h>

#include "runtime/planning/memory_plan.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

PlanModel preset(const std::string& name) {
  return read_plan_model(
      testing::fixtures_dir().parent_path().parent_path() / "configs" / "presets" / (name + ".json"),
      name);
}

TEST(ScalingModel, RingFormulas) {
  const Interconnect link{100.0, 10.0};  // 100 GB/s, 10 us per step
  // All-reduce of 1 MB over 4 ranks: 2*3/4 * 1e6 B / 1e11 B/s = 15 us transfer + 2*3 * 10 us.
  EXPECT_NEAR(ring_all_reduce_seconds(1e6, 4, link), 15e-6 + 60e-6, 1e-12);
  // All-gather with a 1 MB result over 4 ranks: 3/4 * 1e6 / 1e11 = 7.5 us transfer + 3 * 10 us.
  EXPECT_NEAR(ring_all_gather_seconds(1e6, 4, link), 7.5e-6 + 30e-6, 1e-12);
  // Binomial-tree broadcast over 5 ranks: ceil(log2 5) = 3 levels of (1e3 / 1e11 s + 10 us).
  EXPECT_NEAR(tree_broadcast_seconds(1e3, 5, link), 3 * (1e-8 + 10e-6), 1e-12);
  // One rank: nothing crosses a link.
  EXPECT_EQ(ring_all_reduce_seconds(1e6, 1, link), 0.0);
  EXPECT_EQ(ring_all_gather_seconds(1e6, 1, link), 0.0);
  EXPECT_EQ(tree_broadcast_seconds(1e6, 1, link), 0.0);
}

// qwen2-72b (hidden 8192, 80 layers, vocab 152064) at TP=4, B=1, bf16, 100 GB/s, 10 us:
//   all-reduce message  1 x 8192 x 2 B = 16384 B
//   one all-reduce      2*3/4 x 16384 B / 1e11 B/s = 0.24576 us  +  2*3 x 10 us = 60 us
//                       = 60.24576 us
//   161 of them         (2 per layer x 80 + the embedding's) = 9699.56736 us
//   logits all-gather   padded vocab rows ceil(152064/4) = 38016, x 4 ranks x 1 row x 2 B
//                       = 304128 B: 3/4 x 304128 / 1e11 = 2.28096 us + 3 x 10 us = 32.28096 us
//   step plan           2 broadcasts x ceil(log2 4) = 2 levels x (512 / 1e11 s + 10 us)
//                       = 4 x 10.00512 us = 40.02048 us
//   total               9699.56736 + 32.28096 + 40.02048 = 9771.8688 us
TEST(ScalingModel, HandComputedCommunicationQwen2_72bTp4) {
  const PlanModel model = preset("qwen2-72b");
  const CommCost cost = decode_comm(model.config, 4, 1, 2, Interconnect{100.0, 10.0});
  EXPECT_EQ(cost.all_reduces, 161);
  EXPECT_EQ(cost.all_reduce_bytes, 16384.0);
  EXPECT_NEAR(cost.all_reduce_s * 1e6, 9699.56736, 1e-6);
  EXPECT_EQ(cost.all_gather_bytes, 304128.0);
  EXPECT_NEAR(cost.all_gather_s * 1e6, 32.28096, 1e-6);
  EXPECT_NEAR(cost.broadcast_s * 1e6, 40.02048, 1e-6);
  EXPECT_NEAR(cost.total_s() * 1e6, 9771.8688, 1e-6);
}

// The decode byte count is the memory plan's shard less the embedding table (untied: only the B
// looked-up rows are read), plus the KV for C + 2 positions and the activation estimate.
TEST(ScalingModel, DecodeBytesAgreeWithTheMemoryPlan) {
  const PlanModel model = preset("qwen2-72b");
  const RankShape shape = rank_shape(model.config, 8, 0);
  const int64_t shard_bytes = rank_weight_bytes(model, shape, 2, nullptr);
  const int64_t embed_bytes = shape.vocab.padded_rows * model.config.hidden_size * 2;
  const DecodeBytes bytes = decode_bytes(model.config, shape, 32, 1024, 2, KvCacheDtype::kAuto);
  EXPECT_EQ(bytes.weight, shard_bytes - embed_bytes + 32 * 8192 * 2);
  // 80 layers x 2 x 1 kv head (8 kv heads / 8) x 128 x 2 B = 40960 B per position.
  EXPECT_EQ(kv_bytes_per_token(model.config, shape, 2, KvCacheDtype::kAuto), 40960);
  EXPECT_EQ(bytes.kv, int64_t{32} * 1026 * 40960);
  EXPECT_EQ(bytes.activation, 32 * activation_bytes_per_token(model.config, shape, 2));
  // An int8 cache: 128 one-byte codes + a 4-byte scale per head: 80 x 2 x 132 = 21120 B.
  EXPECT_EQ(kv_bytes_per_token(model.config, shape, 2, KvCacheDtype::kInt8), 21120);
  EXPECT_EQ(decode_bytes(model.config, shape, 32, 1024, 2, KvCacheDtype::kInt8).kv,
            int64_t{32} * 1026 * 21120);
}

TEST(ScalingModel, MonotonicAndMeasuredCompute) {
  const PlanModel model = preset("qwen2-72b");
  ScalingOptions options;
  options.context = 1024;
  double previous_compute = 1e9;
  double previous_comm = -1;
  for (int tp : {1, 2, 4, 8}) {
    options.tp_size = tp;
    const ScalingPrediction p = predict_decode_step(model.config, options);
    EXPECT_LT(p.compute_s, previous_compute) << "TP=" << tp << ": a smaller shard moves fewer bytes";
    EXPECT_GT(p.comm.total_s(), previous_comm) << "TP=" << tp << ": more ranks, more ring steps";
    EXPECT_DOUBLE_EQ(p.step_s, p.compute_s + p.comm.total_s());
    EXPECT_DOUBLE_EQ(p.tokens_per_s, 1.0 / p.step_s);
    previous_compute = p.compute_s;
    previous_comm = p.comm.total_s();
    if (tp == 1) {
      EXPECT_EQ(p.comm.total_s(), 0.0);
    }
  }
  // A larger batch: more bytes and a longer step, but more tokens per second.
  options.tp_size = 8;
  const ScalingPrediction one = predict_decode_step(model.config, options);
  options.batch = 32;
  const ScalingPrediction many = predict_decode_step(model.config, options);
  EXPECT_GT(many.bytes.total(), one.bytes.total());
  EXPECT_GT(many.step_s, one.step_s);
  EXPECT_GT(many.tokens_per_s, one.tokens_per_s);
  // A measured compute time replaces the roofline, the communication is unchanged.
  options.measured_compute_s = 0.0206;
  const ScalingPrediction measured = predict_decode_step(model.config, options);
  EXPECT_TRUE(measured.compute_measured);
  EXPECT_DOUBLE_EQ(measured.compute_s, 0.0206);
  EXPECT_DOUBLE_EQ(measured.roofline_compute_s, many.roofline_compute_s);
  EXPECT_DOUBLE_EQ(measured.comm.total_s(), many.comm.total_s());
  EXPECT_DOUBLE_EQ(measured.step_s, 0.0206 + many.comm.total_s());
}

}  // namespace
}  // namespace tpserve::runtime
