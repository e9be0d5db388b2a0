// The int8 KV cache kernels (kernels/cpu/kv_int8.cc): quantization against hand-computed codes and
// its error bound, the fused RoPE write against the float one, and attention over the int8 cache
// against the float attention over the same dequantized values (bit for bit) and over the
// unquantized float cache (within the quantization error).
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace tpserve::kernels::cpu {
namespace {

std::vector<float> random_vector(size_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// An int8 cache of `slots` positions of `kv_heads` heads in host vectors.
struct HostInt8Cache {
  HostInt8Cache(int slots, int kv_heads, int head_dim)
      : key(static_cast<size_t>(slots) * kv_heads * head_dim, 99),
        value(key.size(), 99),
        key_scale(static_cast<size_t>(slots) * kv_heads, -1.0f),
        value_scale(key_scale.size(), -1.0f) {}
  Int8KvCache view() { return {key.data(), value.data(), key_scale.data(), value_scale.data()}; }
  // code * scale per element: what the int8 cache stands for, as a float cache.
  static std::vector<float> dequantize(const std::vector<int8_t>& codes,
                                       const std::vector<float>& scales, int head_dim) {
    std::vector<float> out(codes.size());
    for (size_t i = 0; i < codes.size(); ++i) out[i] = static_cast<float>(codes[i]) * scales[i / head_dim];
    return out;
  }
  std::vector<int8_t> key, value;
  std::vector<float> key_scale, value_scale;
};

TEST(KvInt8, QuantizeHandComputed) {
  // max|x| = 31.75: scale 0.25 exactly, codes round(x / 0.25), ties to even.
  const std::vector<float> x = {31.75f, -12.5f, 0.125f, 0.375f, -31.75f, 0.0f, 15.875f, 0.2f, -0.13f};
  std::vector<int8_t> codes(x.size());
  float scale = 0;
  quantize_int8(x.data(), static_cast<int>(x.size()), codes.data(), &scale);
  EXPECT_EQ(scale, 0.25f);
  EXPECT_EQ(codes, (std::vector<int8_t>{127, -50, 0, 2, -127, 0, 64, 1, -1}));
  // A zero vector: scale 0 and zero codes, so it dequantizes to zeros (no 0 / 0).
  const std::vector<float> zeros(4, 0.0f);
  std::vector<int8_t> zero_codes(4, 5);
  quantize_int8(zeros.data(), 4, zero_codes.data(), &scale);
  EXPECT_EQ(scale, 0.0f);
  EXPECT_EQ(zero_codes, std::vector<int8_t>(4, 0));
}

TEST(KvInt8, RoundTripWithinHalfAStep) {
  const int head_dim = 128;
  for (uint32_t seed = 0; seed < 20; ++seed) {
    // Outliers too: one large value sets the scale of the whole head.
    std::vector<float> x = random_vector(head_dim, seed, 0.5f + seed);
    if (seed % 4 == 0) x[seed % head_dim] = 40.0f;
    std::vector<int8_t> codes(head_dim);
    float scale = 0;
    quantize_int8(x.data(), head_dim, codes.data(), &scale);
    float max_abs = 0;
    for (float v : x) max_abs = std::max(max_abs, std::fabs(v));
    EXPECT_FLOAT_EQ(scale, max_abs / 127.0f);
    for (int d = 0; d < head_dim; ++d) {
      EXPECT_LE(std::abs(codes[d]), 127);
      EXPECT_LE(std::fabs(static_cast<float>(codes[d]) * scale - x[d]), scale * 0.5f * 1.0001f)
          << "seed " << seed << " dim " << d;
    }
  }
}

// Writes k, v of `tokens` positions of one sequence through a shuffled block table into a float
// cache and an int8 cache, then runs both attentions.
struct AttentionCase {
  static constexpr int kBlocks = 8;
  int tokens, q_heads, kv_heads, head_dim, block_size;
  HeadLayout heads;
  std::vector<int32_t> block_table = {5, 1, 7, 3, 0, 6, 2, 4};
  std::vector<int32_t> seq, pos;
  PagedBatch batch;
  std::vector<float> q, k, v;
  std::vector<float> key_cache, value_cache;
  HostInt8Cache int8;

  AttentionCase(int tokens_, int q_heads_, int kv_heads_, int head_dim_, int block_size_,
                HeadLayout heads_)
      : tokens(tokens_), q_heads(q_heads_), kv_heads(kv_heads_), head_dim(head_dim_),
        block_size(block_size_), heads(heads_), seq(tokens_, 0), pos(tokens_),
        int8(kBlocks * block_size_, kv_heads_, head_dim_) {
    std::iota(pos.begin(), pos.end(), 0);
    batch = PagedBatch{tokens, seq.data(), pos.data(), block_table.data(), kBlocks, block_size};
    q = random_vector(static_cast<size_t>(tokens) * q_heads * head_dim, 4);
    k = random_vector(static_cast<size_t>(tokens) * kv_heads * head_dim, 5, 2.0f);
    v = random_vector(static_cast<size_t>(tokens) * kv_heads * head_dim, 6);
    key_cache.assign(static_cast<size_t>(kBlocks) * block_size * kv_heads * head_dim, NAN);
    value_cache.assign(key_cache.size(), NAN);
    cache_write(k.data(), v.data(), kv_heads * head_dim, batch, heads, key_cache.data(),
                value_cache.data());
    cache_write_int8(k.data(), v.data(), kv_heads * head_dim, batch, heads, int8.view());
  }
  std::vector<float> float_attention(const std::vector<float>& keys,
                                     const std::vector<float>& values, float scale) {
    std::vector<float> out(static_cast<size_t>(tokens) * q_heads * head_dim);
    attention(q.data(), q_heads * head_dim, keys.data(), values.data(), batch, heads, scale,
              out.data());
    return out;
  }
  std::vector<float> int8_attention(float scale) {
    std::vector<float> out(static_cast<size_t>(tokens) * q_heads * head_dim);
    attention_int8(q.data(), q_heads * head_dim, int8.view(), batch, heads, scale, out.data());
    return out;
  }
};

TEST(KvInt8, CacheWriteQuantizesEachPositionAndHeadWhereTheFloatCacheHoldsIt) {
  AttentionCase c(13, 4, 2, 16, 4, HeadLayout{4, 2, 16, 0, 0, 2});
  for (int t = 0; t < c.tokens; ++t) {
    const int64_t slot = int64_t{c.block_table[t / 4]} * 4 + t % 4;
    for (int h = 0; h < c.kv_heads; ++h) {
      const int64_t row = slot * c.kv_heads + h;
      std::vector<int8_t> codes(16);
      float scale = 0;
      quantize_int8(c.k.data() + (t * c.kv_heads + h) * 16, 16, codes.data(), &scale);
      EXPECT_EQ(c.int8.key_scale[row], scale);
      EXPECT_TRUE(std::equal(codes.begin(), codes.end(), c.int8.key.begin() + row * 16));
      quantize_int8(c.v.data() + (t * c.kv_heads + h) * 16, 16, codes.data(), &scale);
      EXPECT_EQ(c.int8.value_scale[row], scale);
      EXPECT_TRUE(std::equal(codes.begin(), codes.end(), c.int8.value.begin() + row * 16));
    }
  }
}

TEST(KvInt8, AttentionEqualsFloatAttentionOnTheDequantizedCache) {
  // GQA (group 3), a partial last block, and a sharded layout whose local q heads start mid-group
  // (rank 1 of 2 for 6 q / 2 KV heads: q heads 3..5, KV heads 1 and 0..1 local -> global 1).
  const HeadLayout layouts[] = {{6, 2, 32, 0, 0, 3}, {3, 1, 32, 3, 1, 3}, {4, 4, 32, 0, 0, 1}};
  for (const HeadLayout& heads : layouts) {
    AttentionCase c(29, heads.num_q_heads, heads.num_kv_heads, 32, 8, heads);
    const float scale = 1.0f / std::sqrt(32.0f);
    const auto keys = HostInt8Cache::dequantize(c.int8.key, c.int8.key_scale, 32);
    const auto values = HostInt8Cache::dequantize(c.int8.value, c.int8.value_scale, 32);
    const auto expected = c.float_attention(keys, values, scale);
    const auto got = c.int8_attention(scale);
    // The same float32 operations in the same order: equal, not merely close.
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], expected[i]) << i;
  }
}

TEST(KvInt8, AttentionStaysCloseToTheFloatCache) {
  // Against the unquantized cache, within what the quantization error allows: if no score of a
  // query head moves by more than delta, every softmax weight moves by a factor within
  // exp(+-2 delta), and out' - out = sum w' (v' - v) + sum (w' - w) v is at most
  // max|v' - v| + max|v| * (exp(2 delta) - 1), per token and query head.
  const int tokens = 40, q_heads = 8, kv_heads = 2, head_dim = 64, block_size = 16;
  AttentionCase c(tokens, q_heads, kv_heads, head_dim, block_size,
                  HeadLayout{q_heads, kv_heads, head_dim, 0, 0, 4});
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const auto reference = c.float_attention(c.key_cache, c.value_cache, scale);
  const auto got = c.int8_attention(scale);
  const auto keys = HostInt8Cache::dequantize(c.int8.key, c.int8.key_scale, head_dim);
  const auto values = HostInt8Cache::dequantize(c.int8.value, c.int8.value_scale, head_dim);
  const auto slot = [&](int p) { return int64_t{c.block_table[p / block_size]} * block_size + p % block_size; };
  float max_value = 0, max_value_error = 0;
  for (int p = 0; p < tokens; ++p) {
    for (int i = 0; i < kv_heads * head_dim; ++i) {
      const float v = c.v[p * kv_heads * head_dim + i];
      max_value = std::max(max_value, std::fabs(v));
      max_value_error = std::max(max_value_error, std::fabs(values[slot(p) * kv_heads * head_dim + i] - v));
    }
  }
  float worst = 0, worst_bound = 0;
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < q_heads; ++h) {
      const int kv = h / 4;
      const float* q = c.q.data() + (t * q_heads + h) * head_dim;
      double delta = 0;
      for (int p = 0; p <= t; ++p) {
        double moved = 0;
        for (int d = 0; d < head_dim; ++d) {
          const int64_t i = (slot(p) * kv_heads + kv) * head_dim + d;
          moved += q[d] * (keys[i] - c.k[(p * kv_heads + kv) * head_dim + d]);
        }
        delta = std::max(delta, std::fabs(moved) * scale);
      }
      const double bound = max_value_error + max_value * std::expm1(2 * delta) + 1e-6;
      for (int d = 0; d < head_dim; ++d) {
        const size_t i = static_cast<size_t>((t * q_heads + h) * head_dim + d);
        const float error = std::fabs(got[i] - reference[i]);
        EXPECT_LE(error, bound) << "token " << t << " head " << h;
        worst = std::max(worst, error);
      }
      worst_bound = std::max(worst_bound, static_cast<float>(bound));
    }
  }
  std::printf("[ kv int8 ] max|attention(int8 cache) - attention(f32 cache)| = %.3g (largest bound "
              "%.3g; value step / 2 = %.3g)\n", worst, worst_bound, max_value_error);
  EXPECT_GT(worst, 0.0f);  // it is quantized
}

TEST(KvInt8, RopeCacheWriteInt8IsRopeThenQuantize) {
  const int q_heads = 2, kv_heads = 1, head_dim = 8, tokens = 3;
  const int64_t row_stride = (q_heads + 2 * kv_heads) * head_dim;
  const std::vector<float> inv_freq = {1.0f, 0.1f, 0.01f, 0.001f};
  RopeParams params{head_dim, head_dim, false, inv_freq.data()};
  const std::vector<int32_t> pos = {0, 5, 9};
  const std::vector<int32_t> seq(tokens, 0), block_table = {2, 0, 1};
  PagedBatch batch{tokens, seq.data(), pos.data(), block_table.data(), 3, 4};
  HeadLayout heads{q_heads, kv_heads, head_dim, 0, 0, 2};
  std::vector<float> fused = random_vector(tokens * row_stride, 9);
  std::vector<float> float_path = fused;
  HostInt8Cache fused_cache(12, kv_heads, head_dim), float_cache(12, kv_heads, head_dim);
  rope_cache_write_int8(fused.data(), row_stride, pos.data(), tokens, heads, params, batch,
                        fused_cache.view());
  std::vector<float> key_cache(12 * head_dim), value_cache(12 * head_dim);
  rope_cache_write(float_path.data(), row_stride, pos.data(), tokens, heads, params, batch,
                   key_cache.data(), value_cache.data());
  EXPECT_EQ(fused, float_path);  // q and k rotated in place alike
  const int64_t k_column = q_heads * head_dim, v_column = k_column + head_dim;
  cache_write_int8(float_path.data() + k_column, float_path.data() + v_column, row_stride, batch,
                   heads, float_cache.view());
  EXPECT_EQ(fused_cache.key, float_cache.key);
  EXPECT_EQ(fused_cache.value, float_cache.value);
  EXPECT_EQ(fused_cache.key_scale, float_cache.key_scale);
  EXPECT_EQ(fused_cache.value_scale, float_cache.value_scale);
}

}  // namespace
}  // namespace tpserve::kernels::cpu
