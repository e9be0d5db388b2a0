// The float32 reference ops against hand-computed cases and naive loops.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace tpserve::kernels::cpu {
namespace {

std::vector<float> random_vector(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

TEST(CpuOps, RmsNormHandComputed) {
  const std::vector<float> x = {3.0f, 4.0f};
  const std::vector<float> w = {1.0f, 2.0f};
  std::vector<float> out(2);
  rms_norm(x.data(), w.data(), 1, 2, 0.0f, out.data());
  const float rms = std::sqrt(12.5f);
  EXPECT_FLOAT_EQ(out[0], 3.0f / rms);
  EXPECT_FLOAT_EQ(out[1], 8.0f / rms);
}

TEST(CpuOps, LinearMatchesNaiveLoopWithBias) {
  const int m = 3, n = 5, k = 7;
  const auto x = random_vector(m * k, 1), w = random_vector(n * k, 2), b = random_vector(n, 3);
  std::vector<float> out(m * n);
  linear(x.data(), w.data(), b.data(), m, n, k, out.data());
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double sum = b[j];
      for (int p = 0; p < k; ++p) sum += static_cast<double>(x[i * k + p]) * w[j * k + p];
      EXPECT_NEAR(out[i * n + j], sum, 1e-5);
    }
  }
}

TEST(CpuOps, SiluMulHandComputed) {
  const std::vector<float> gate_up = {0.0f, 2.0f, 5.0f, 3.0f};  // one row, inter = 2
  std::vector<float> out(2);
  silu_mul(gate_up.data(), 1, 2, out.data());
  EXPECT_FLOAT_EQ(out[0], 0.0f);
  EXPECT_NEAR(out[1], 2.0f / (1.0f + std::exp(-2.0f)) * 3.0f, 1e-6);
}

TEST(CpuOps, EmbeddingZeroesRowsOutsideTheShard) {
  const std::vector<float> table = {1, 2, 3, 4};  // rows 10 and 11 of the vocabulary, hidden 2
  const std::vector<int32_t> ids = {11, 3, 10};
  std::vector<float> out(6, -1.0f);
  embedding(ids.data(), 3, table.data(), 10, 2, 2, out.data());
  EXPECT_EQ(out, (std::vector<float>{3, 4, 0, 0, 1, 2}));
}

TEST(CpuOps, RopeRotateHalfAndInterleavedPairs) {
  const std::vector<float> inv_freq = {1.0f, 0.01f};
  const int32_t position = 1;
  RopeParams params{4, 4, false, inv_freq.data(), 1.0f};
  std::vector<float> x = {1, 0, 0, 0};
  rope(x.data(), 4, &position, 1, 1, params);
  // rotate_half pairs dim 0 with dim 2.
  EXPECT_NEAR(x[0], std::cos(1.0f), 1e-6);
  EXPECT_NEAR(x[2], std::sin(1.0f), 1e-6);
  EXPECT_EQ(x[1], 0.0f);
  params.interleaved = true;
  x = {1, 0, 0, 0};
  rope(x.data(), 4, &position, 1, 1, params);
  EXPECT_NEAR(x[0], std::cos(1.0f), 1e-6);
  EXPECT_NEAR(x[1], std::sin(1.0f), 1e-6);
  EXPECT_EQ(x[2], 0.0f);
  // Partial rotary: only the first rotary_dim dims move.
  params = {4, 2, false, inv_freq.data(), 1.0f};
  x = {1, 0, 5, 6};
  rope(x.data(), 4, &position, 1, 1, params);
  EXPECT_NEAR(x[1], std::sin(1.0f), 1e-6);
  EXPECT_EQ(x[2], 5.0f);
  EXPECT_EQ(x[3], 6.0f);
}

TEST(CpuOps, RopeDynamicNtkFrequencyScaleAndQueryScale) {
  // Rotary dim 6 (pairs 0, 1, 2), a 2-dim tail; g = 4 scales pair i's frequency by
  // 4^(-2i / (6 - 2)): 1, 1/2, 1/4. The query scale 2 multiplies every dim, the tail included.
  const std::vector<float> inv_freq = {1.0f, 0.1f, 0.01f};
  const std::vector<int32_t> positions = {10};
  const std::vector<float> growth = {4.0f}, query = {2.0f};
  RopeParams params{8, 6, false, inv_freq.data(), 1.0f, growth.data(), query.data()};
  std::vector<float> x = {1, 1, 1, 0, 0, 0, 5, 6};
  rope(x.data(), 8, positions.data(), 1, 1, params);
  const float angles[3] = {10.0f * 1.0f, 10.0f * 0.1f / 2.0f, 10.0f * 0.01f / 4.0f};
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(x[i], 2.0f * std::cos(angles[i]), 1e-5) << "pair " << i;
    EXPECT_NEAR(x[i + 3], 2.0f * std::sin(angles[i]), 1e-5) << "pair " << i;
  }
  EXPECT_FLOAT_EQ(x[6], 10.0f);
  EXPECT_FLOAT_EQ(x[7], 12.0f);
  // g = 1 is bitwise the plain rotation.
  const std::vector<float> one = {1.0f};
  RopeParams identity{8, 6, false, inv_freq.data(), 1.0f, one.data(), nullptr};
  RopeParams plain{8, 6, false, inv_freq.data(), 1.0f};
  std::vector<float> a = {1, 2, 3, 4, 5, 6, 7, 8}, b = a;
  rope(a.data(), 8, positions.data(), 1, 1, identity);
  rope(b.data(), 8, positions.data(), 1, 1, plain);
  EXPECT_EQ(a, b);
}

TEST(CpuOps, RopeCacheWriteScalesQueriesNotKeys) {
  const HeadLayout heads{1, 1, 4, 0, 0, 1};
  const std::vector<float> inv_freq = {1.0f, 0.01f};
  const std::vector<int32_t> pos = {3}, seq = {0}, table = {0};
  const std::vector<float> growth = {2.0f}, query = {3.0f};
  const PagedBatch batch{1, seq.data(), pos.data(), table.data(), 1, 4};
  std::vector<float> qkv = {1, 2, 3, 4, 1, 2, 3, 4, 9, 9, 9, 9};
  std::vector<float> key_cache(16, 0.0f), value_cache(16, 0.0f);
  RopeParams params{4, 4, false, inv_freq.data(), 1.0f, growth.data(), query.data()};
  rope_cache_write(qkv.data(), 12, pos.data(), 1, heads, params, batch, key_cache.data(),
                   value_cache.data());
  for (int d = 0; d < 4; ++d) {
    EXPECT_FLOAT_EQ(qkv[d], 3.0f * qkv[4 + d]) << "q = 3 * k (same input, same rotation)";
    EXPECT_EQ(key_cache[3 * 4 + d], qkv[4 + d]);
  }
}

// A dense causal attention computed directly from K/V rows, for comparison with the paged one.
std::vector<float> dense_attention(const std::vector<float>& q, const std::vector<float>& k,
                                   const std::vector<float>& v, int tokens, int q_heads,
                                   int kv_heads, int head_dim, float scale) {
  std::vector<float> out(static_cast<size_t>(tokens) * q_heads * head_dim, 0.0f);
  const int group = q_heads / kv_heads;
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < q_heads; ++h) {
      const int kv = h / group;
      std::vector<double> scores(t + 1);
      double max_score = -1e30, total = 0;
      for (int p = 0; p <= t; ++p) {
        double dot = 0;
        for (int d = 0; d < head_dim; ++d) {
          dot += q[(t * q_heads + h) * head_dim + d] * k[(p * kv_heads + kv) * head_dim + d];
        }
        scores[p] = dot * scale;
        max_score = std::max(max_score, scores[p]);
      }
      for (double& s : scores) total += (s = std::exp(s - max_score));
      for (int p = 0; p <= t; ++p) {
        for (int d = 0; d < head_dim; ++d) {
          out[(t * q_heads + h) * head_dim + d] +=
              static_cast<float>(scores[p] / total * v[(p * kv_heads + kv) * head_dim + d]);
        }
      }
    }
  }
  return out;
}

TEST(CpuOps, PagedAttentionMatchesDenseThroughAShuffledBlockTable) {
  const int tokens = 11, q_heads = 4, kv_heads = 2, head_dim = 8, block_size = 4;
  const auto q = random_vector(tokens * q_heads * head_dim, 4);
  const auto k = random_vector(tokens * kv_heads * head_dim, 5);
  const auto v = random_vector(tokens * kv_heads * head_dim, 6);
  const float scale = 1.0f / std::sqrt(8.0f);
  // Blocks deliberately out of order and not starting at 0.
  const std::vector<int32_t> block_table = {5, 1, 3};
  std::vector<int32_t> seq(tokens, 0), pos(tokens);
  std::iota(pos.begin(), pos.end(), 0);
  PagedBatch batch{tokens, seq.data(), pos.data(), block_table.data(), 3, block_size};
  HeadLayout heads{q_heads, kv_heads, head_dim, 0, 0, q_heads / kv_heads};
  std::vector<float> key_cache(6 * block_size * kv_heads * head_dim, NAN);
  std::vector<float> value_cache(key_cache.size(), NAN);
  cache_write(k.data(), v.data(), kv_heads * head_dim, batch, heads, key_cache.data(),
              value_cache.data());
  std::vector<float> out(q.size());
  attention(q.data(), q_heads * head_dim, key_cache.data(), value_cache.data(), batch, heads,
            scale, out.data());
  const auto expected = dense_attention(q, k, v, tokens, q_heads, kv_heads, head_dim, scale);
  for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], expected[i], 1e-5) << i;
}

TEST(CpuOps, AttentionHeadLayoutMapsShardedQueryHeadsToTheirKvHead) {
  // Rank 1 of 3 for 12 query / 2 KV heads holds q heads 4..7 and KV heads 0..1 (group 6): heads
  // 4, 5 read KV 0 (local 0) and heads 6, 7 read KV 1 (local 1).
  const int head_dim = 2;
  const std::vector<float> q(4 * head_dim, 1.0f);
  const std::vector<float> key = {1, 0, 0, 1};       // one token, two local KV heads
  const std::vector<float> value = {10, 11, 20, 21};
  const int32_t seq = 0, pos = 0, block = 0;
  PagedBatch batch{1, &seq, &pos, &block, 1, 1};
  HeadLayout heads{4, 2, head_dim, 4, 0, 6};
  std::vector<float> key_cache(4), value_cache(4), out(8);
  cache_write(key.data(), value.data(), 4, batch, heads, key_cache.data(), value_cache.data());
  attention(q.data(), 4 * head_dim, key_cache.data(), value_cache.data(), batch, heads, 1.0f,
            out.data());
  EXPECT_EQ(out, (std::vector<float>{10, 11, 10, 11, 20, 21, 20, 21}));
}

// The fused ops are compositions of the old ones on the CPU: bit-for-bit the same results, which
// the model's fixture tests (1e-4 against transformers) rely on.
TEST(CpuOps, AddRmsNormIsBitwiseAddThenRmsNorm) {
  for (const int64_t cols : {37, 64, 3584}) {
    const int rows = 3;
    const auto y = random_vector(rows * cols, 91), weight = random_vector(cols, 92);
    auto x_fused = random_vector(rows * cols, 93);
    auto x_unfused = x_fused;
    std::vector<float> out_fused(rows * cols), out_unfused(rows * cols);
    add_rms_norm(x_fused.data(), y.data(), weight.data(), rows, cols, 1e-6f, out_fused.data());
    add(x_unfused.data(), y.data(), rows * cols);
    rms_norm(x_unfused.data(), weight.data(), rows, cols, 1e-6f, out_unfused.data());
    EXPECT_EQ(x_fused, x_unfused) << "residual, cols " << cols;
    EXPECT_EQ(out_fused, out_unfused) << "normed, cols " << cols;
  }
}

TEST(CpuOps, RopeCacheWriteIsBitwiseRopeRopeCacheWrite) {
  // Two sequences (a 3-token prefill chunk at positions 5..7 and a decode at 20) through a
  // shuffled block table; rows [q | k | v | 8 spare]; GQA 4 q heads over 2 KV heads.
  const HeadLayout heads{4, 2, 16, 0, 0, 2};
  const int block_size = 4;
  const std::vector<int32_t> seq = {0, 0, 0, 1}, pos = {5, 6, 7, 20};
  const std::vector<int32_t> tables = {3, 0, 7, 7, 7, 7, 1, 6, 2, 4, 5, 8};  // [2][6]
  const PagedBatch batch{4, seq.data(), pos.data(), tables.data(), 6, block_size};
  const int64_t q_width = heads.num_q_heads * heads.head_dim;
  const int64_t kv_width = heads.num_kv_heads * heads.head_dim;
  const int64_t row_stride = q_width + 2 * kv_width + 8;
  struct Case {
    int rotary_dim;
    bool interleaved;
    float scaling;
  };
  for (const Case c : {Case{16, false, 1.0f}, Case{8, true, 1.0f}, Case{8, false, 1.3f}}) {
    std::vector<float> inv_freq(c.rotary_dim / 2);
    for (size_t i = 0; i < inv_freq.size(); ++i) {
      inv_freq[i] = 1.0f / std::pow(10000.0f, 2.0f * i / c.rotary_dim);
    }
    const RopeParams params{heads.head_dim, c.rotary_dim, c.interleaved, inv_freq.data(),
                            c.scaling};
    auto qkv_fused = random_vector(4 * row_stride, 94);
    auto qkv_unfused = qkv_fused;
    const size_t cache_elements = 9 * block_size * kv_width;
    std::vector<float> key_fused(cache_elements, 0.0f), value_fused(cache_elements, 0.0f);
    auto key_unfused = key_fused, value_unfused = value_fused;
    rope_cache_write(qkv_fused.data(), row_stride, pos.data(), 4, heads, params, batch,
                     key_fused.data(), value_fused.data());
    rope(qkv_unfused.data(), row_stride, pos.data(), 4, heads.num_q_heads, params);
    rope(qkv_unfused.data() + q_width, row_stride, pos.data(), 4, heads.num_kv_heads, params);
    cache_write(qkv_unfused.data() + q_width, qkv_unfused.data() + q_width + kv_width, row_stride,
                batch, heads, key_unfused.data(), value_unfused.data());
    EXPECT_EQ(qkv_fused, qkv_unfused) << "rotary_dim " << c.rotary_dim;
    EXPECT_EQ(key_fused, key_unfused) << "rotary_dim " << c.rotary_dim;
    EXPECT_EQ(value_fused, value_unfused) << "rotary_dim " << c.rotary_dim;
  }
}

TEST(CpuOps, ArgmaxTakesTheLowestIndexOnTies) {
  const std::vector<float> logits = {1, 3, 3, 0, -1, -2, -1, -5};
  std::vector<int32_t> out(2);
  argmax(logits.data(), 2, 4, out.data());
  EXPECT_EQ(out, (std::vector<int32_t>{1, 0}));
}

}  // namespace
}  // namespace tpserve::kernels::cpu
