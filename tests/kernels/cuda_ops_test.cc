// The CUDA backend (bf16 and fp16) against its float32 CPU twin on the same random inputs.
//
// Inputs are uploaded in the compute dtype and downloaded again as float32, and the CPU twin runs
// on those rounded values: the two then differ only in accumulation order and in the rounding of
// the outputs. Tolerances, relative to each element and to the RMS of the reference output:
//   bf16: 1e-2 (8 mantissa bits: one rounding of the output is up to 2^-9 ~ 2e-3 relative),
//   fp16: 2e-3 (11 bits: 2^-12 ~ 2.4e-4 per rounding).
// Copies (embedding, copy_rows, cache_write) and argmax must match exactly.
//
// Compiles in every build (kernels/cuda_backend.h and kernels/ops.h only); where no CUDA device
// exists (or CUDA is not built in) every GPU test is skipped with a visible message.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/error.h"
#include "kernels/cuda_backend.h"
#include "kernels/ops.h"

namespace tpserve::kernels {
namespace {

std::vector<float> random_vector(size_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// Device memory released on scope exit.
class Buffer {
 public:
  Buffer(Backend& backend, size_t bytes) : backend_(backend), data_(backend.allocate(bytes)) {}
  ~Buffer() { backend_.release(data_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  void* get() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }

 private:
  Backend& backend_;
  void* data_;
};

class CudaOps : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) {
      GTEST_SKIP() << "no CUDA device: CUDA backend tests need a GPU (or CUDA is not built in)";
    }
    gpu_ = make_cuda_backend(0, GetParam());
    cpu_ = make_cpu_backend();
  }

  float tolerance() const { return GetParam() == DType::kBF16 ? 1e-2f : 2e-3f; }
  size_t element_bytes() const { return dtype_size(GetParam()); }

  // Uploads `values` in the compute dtype and replaces them with their rounded float32 values.
  std::unique_ptr<Buffer> upload_rounded(std::vector<float>& values) {
    auto buffer = std::make_unique<Buffer>(*gpu_, values.size() * element_bytes());
    gpu_->upload_f32(buffer->get(), values.data(), static_cast<int64_t>(values.size()));
    gpu_->download_f32(values.data(), buffer->get(), static_cast<int64_t>(values.size()));
    return buffer;
  }
  std::unique_ptr<Buffer> upload_raw(const void* data, size_t bytes) {
    auto buffer = std::make_unique<Buffer>(*gpu_, bytes);
    gpu_->copy_to_device(buffer->get(), data, bytes);
    return buffer;
  }
  std::unique_ptr<Buffer> upload_ints(const std::vector<int32_t>& values) {
    return upload_raw(values.data(), values.size() * sizeof(int32_t));
  }
  std::unique_ptr<Buffer> allocate(size_t elements) {
    return std::make_unique<Buffer>(*gpu_, std::max<size_t>(elements, 1) * element_bytes());
  }
  std::vector<float> download(const Buffer& buffer, size_t elements) {
    std::vector<float> out(elements);
    gpu_->download_f32(out.data(), buffer.get(), static_cast<int64_t>(elements));
    return out;
  }

  // |gpu - ref| <= tol * (|ref| + rms(ref)) element-wise; reports the first few misses.
  void expect_close(const std::vector<float>& gpu, const std::vector<float>& ref,
                    const std::string& what, float tolerance_scale = 1.0f) {
    ASSERT_EQ(gpu.size(), ref.size()) << what;
    double sum_squares = 0.0;
    for (float r : ref) sum_squares += static_cast<double>(r) * r;
    const double rms = ref.empty() ? 0.0 : std::sqrt(sum_squares / ref.size());
    const double tol = tolerance() * tolerance_scale;
    int misses = 0;
    double worst = 0.0;
    for (size_t i = 0; i < ref.size(); ++i) {
      const double error = std::abs(static_cast<double>(gpu[i]) - ref[i]);
      const double allowed = tol * (std::abs(ref[i]) + rms) + 1e-30;
      worst = std::max(worst, error / allowed);
      if (!(error <= allowed) && ++misses <= 5) {
        ADD_FAILURE() << what << ": element " << i << " gpu " << gpu[i] << " cpu " << ref[i]
                      << " (allowed " << allowed << ")";
      }
    }
    EXPECT_EQ(misses, 0) << what << ": " << misses << " of " << ref.size()
                         << " elements out of tolerance; worst error/allowed " << worst;
  }

  std::unique_ptr<Backend> gpu_;
  std::unique_ptr<Backend> cpu_;
};

std::string dtype_test_name(const ::testing::TestParamInfo<DType>& info) {
  return std::string(dtype_name(info.param));
}

TEST_P(CudaOps, UploadDownloadRoundTripRoundsToNearestEven) {
  // Over two staging chunks (1 Mi floats each) and a partial third one, plus special values.
  auto values = random_vector((size_t{5} << 19) + 77, 11, 3.0f);
  const std::vector<float> specials = {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 1e-7f, 3.14159265f};
  std::copy(specials.begin(), specials.end(), values.begin());
  const auto original = values;
  auto buffer = upload_rounded(values);  // values now hold what the GPU stored
  for (size_t i = 0; i < original.size(); ++i) {
    const float expected = GetParam() == DType::kBF16 ? bf16_to_f32(f32_to_bf16(original[i]))
                                                      : f16_to_f32(f32_to_f16(original[i]));
    ASSERT_EQ(values[i], expected) << "element " << i << " from " << original[i];
  }
  gpu_->fill_zero(buffer->get(), 64 * element_bytes());
  const auto zeroed = download(*buffer, 65);
  for (int i = 0; i < 64; ++i) ASSERT_EQ(zeroed[i], 0.0f) << i;
  EXPECT_EQ(zeroed[64], values[64]);
  EXPECT_NE(gpu_->native_stream(), nullptr);  // collectives order themselves on it
}

// Weights uploaded from each file dtype (converted on the device) land exactly as upload_f32 of
// the CPU's float32 widening stored them -- the load path before the device conversion. Every
// 16-bit pattern, float32 specials and random float32 bits; from pinned and from pageable memory;
// over several staging chunks. NaN must stay NaN; its payload may differ (CUDA's rounding
// canonicalizes NaN, a byte copy keeps it).
TEST_P(CudaOps, UploadFromEachFileDtypeMatchesUploadF32OfTheWidening) {
  std::mt19937 rng(5);
  for (DType file : {DType::kF32, DType::kF16, DType::kBF16}) {
    const int64_t in_element = dtype_size(file);
    const int64_t n = file == DType::kF32 ? (int64_t{5} << 19) + 77 : 65536 * 3 + 5;
    std::vector<uint8_t> bytes(static_cast<size_t>(n * in_element));
    for (int64_t i = 0; i < n; ++i) {
      if (file == DType::kF32) {
        uint32_t bits = static_cast<uint32_t>(rng());
        const uint32_t specials[] = {0x7f800000u, 0xff800000u, 0x7fc00000u, 0x00000001u,
                                     0x80000000u, 0x477fe000u, 0x33800000u};
        if (i < 7) bits = specials[i];
        std::memcpy(&bytes[static_cast<size_t>(i * 4)], &bits, 4);
      } else {
        const uint16_t bits = static_cast<uint16_t>(i);
        std::memcpy(&bytes[static_cast<size_t>(i * 2)], &bits, 2);
      }
    }
    std::vector<float> widened(static_cast<size_t>(n));
    convert_to_f32(file, bytes.data(), widened.data(), n);
    Buffer reference(*gpu_, static_cast<size_t>(n) * element_bytes());
    gpu_->upload_f32(reference.get(), widened.data(), n);
    std::vector<uint16_t> expected(static_cast<size_t>(n));
    gpu_->copy_to_host(expected.data(), reference.get(), expected.size() * 2);
    for (bool pinned : {false, true}) {
      void* host = pinned ? gpu_->allocate_host(bytes.size()) : bytes.data();
      if (pinned) std::memcpy(host, bytes.data(), bytes.size());
      Buffer loaded(*gpu_, static_cast<size_t>(n) * element_bytes());
      gpu_->upload(loaded.get(), file, host, n);
      std::vector<uint16_t> got(static_cast<size_t>(n));
      gpu_->copy_to_host(got.data(), loaded.get(), got.size() * 2);
      if (pinned) gpu_->release_host(host);
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t e = expected[static_cast<size_t>(i)], g = got[static_cast<size_t>(i)];
        const bool both_nan = std::isnan(widened[static_cast<size_t>(i)]) &&
                              (GetParam() == DType::kBF16 ? std::isnan(bf16_to_f32(g))
                                                          : std::isnan(f16_to_f32(g)));
        ASSERT_TRUE(e == g || both_nan)
            << dtype_name(file) << (pinned ? " pinned" : " pageable") << " element " << i
            << ": expected 0x" << std::hex << e << ", got 0x" << g;
      }
    }
  }
}

TEST_P(CudaOps, EmbeddingZeroesIdsOutsideTheSlice) {
  for (const int64_t hidden : {24, 13}) {  // 16-byte vector path and scalar path
    const int64_t row_begin = 100, num_rows = 10;
    auto table = random_vector(num_rows * hidden, 21);
    auto table_gpu = upload_rounded(table);
    const std::vector<int32_t> ids = {99, 100, 109, 110, 105, -1, 0, 101};
    auto ids_gpu = upload_ints(ids);
    auto out_gpu = allocate(ids.size() * hidden);
    gpu_->embedding(ids_gpu->as<int32_t>(), static_cast<int>(ids.size()), table_gpu->get(),
                    row_begin, num_rows, hidden, out_gpu->get());
    std::vector<float> expected(ids.size() * hidden);
    cpu_->embedding(ids.data(), static_cast<int>(ids.size()), table.data(), row_begin, num_rows,
                    hidden, expected.data());
    EXPECT_EQ(download(*out_gpu, expected.size()), expected) << "hidden " << hidden;
  }
}

TEST_P(CudaOps, RmsNormMatchesCpuIncludingInPlace) {
  const int rows = 5;
  for (const int64_t cols : {1000, 4096, 37}) {
    auto x = random_vector(rows * cols, 31, 2.0f);
    auto weight = random_vector(cols, 32);
    auto x_gpu = upload_rounded(x);
    auto weight_gpu = upload_rounded(weight);
    auto out_gpu = allocate(rows * cols);
    gpu_->rms_norm(x_gpu->get(), weight_gpu->get(), rows, cols, 1e-6f, out_gpu->get());
    std::vector<float> expected(x.size());
    cpu_->rms_norm(x.data(), weight.data(), rows, cols, 1e-6f, expected.data());
    expect_close(download(*out_gpu, expected.size()), expected,
                 "rms_norm cols " + std::to_string(cols));
    gpu_->rms_norm(x_gpu->get(), weight_gpu->get(), rows, cols, 1e-6f, x_gpu->get());
    expect_close(download(*x_gpu, expected.size()), expected, "rms_norm in place");
  }
}

TEST_P(CudaOps, AddRmsNormMatchesCpuAndAddsExactlyAsAdd) {
  // 3584 (Qwen2.5-7B hidden) and 1000: one vector per thread; 20000: four per thread; 37: the
  // scalar path; 70000: too wide to keep in registers, scalar path.
  for (const int64_t cols : {3584, 1000, 37, 20000, 70000}) {
    const int rows = cols > 10000 ? 2 : 5;
    const auto n = static_cast<size_t>(rows * cols);
    auto x = random_vector(n, 33, 2.0f);
    auto y = random_vector(n, 34, 2.0f);
    auto weight = random_vector(cols, 35);
    auto x_gpu = upload_rounded(x);
    auto y_gpu = upload_rounded(y);
    auto weight_gpu = upload_rounded(weight);
    auto x_added_gpu = upload_rounded(x);  // the unfused add, for the exact residual check
    auto out_gpu = allocate(n);
    gpu_->add_rms_norm(x_gpu->get(), y_gpu->get(), weight_gpu->get(), rows, cols, 1e-6f,
                       out_gpu->get());
    gpu_->add(x_added_gpu->get(), y_gpu->get(), static_cast<int64_t>(n));
    const auto residual = download(*x_gpu, n);
    EXPECT_EQ(residual, download(*x_added_gpu, n)) << "residual as add rounds it, cols " << cols;
    std::vector<float> expected(n);
    cpu_->add_rms_norm(x.data(), y.data(), weight.data(), rows, cols, 1e-6f, expected.data());
    expect_close(residual, x, "add_rms_norm residual cols " + std::to_string(cols));
    expect_close(download(*out_gpu, n), expected, "add_rms_norm cols " + std::to_string(cols));
  }
}

TEST_P(CudaOps, LinearMatchesCpuWithAndWithoutBias) {
  struct Shape {
    int m;
    int64_t n, k;
  };
  const std::vector<Shape> shapes = {{1, 64, 128},   {1, 4096, 1024}, {3, 17, 33},
                                     {7, 1000, 256}, {64, 384, 512},  {33, 250, 130},
                                     {1, 3, 5},      {128, 1536, 896}};
  uint32_t seed = 40;
  for (const Shape& s : shapes) {
    auto x = random_vector(s.m * s.k, ++seed);
    auto w = random_vector(s.n * s.k, ++seed, 0.05f);
    auto b = random_vector(s.n, ++seed);
    auto x_gpu = upload_rounded(x);
    auto w_gpu = upload_rounded(w);
    auto b_gpu = upload_rounded(b);
    for (const bool with_bias : {false, true}) {
      auto out_gpu = allocate(s.m * s.n);
      gpu_->linear(x_gpu->get(), w_gpu->get(), with_bias ? b_gpu->get() : nullptr, s.m, s.n, s.k,
                   out_gpu->get());
      std::vector<float> expected(s.m * s.n);
      cpu_->linear(x.data(), w.data(), with_bias ? b.data() : nullptr, s.m, s.n, s.k,
                   expected.data());
      expect_close(download(*out_gpu, expected.size()), expected,
                   "linear m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) +
                       " k=" + std::to_string(s.k) + (with_bias ? " +bias" : ""));
    }
  }
}

TEST_P(CudaOps, RopeBothConventionsFullAndPartial) {
  const int num_tokens = 6, num_heads = 3, head_dim = 64;
  const int64_t row_stride = num_heads * head_dim + 24;  // trailing columns must stay untouched
  const std::vector<int32_t> positions = {0, 1, 7, 511, 4000, 32767};
  // Dynamic NTK's per-token frequency scale g (1: untouched) and logn's query scale.
  const std::vector<float> frequency_scale = {1.0f, 1.0f, 1.5f, 3.0f, 7.0f, 1.0f};
  const std::vector<float> query_scale = {1.0f, 1.0f, 1.1f, 1.25f, 2.0f, 3.75f};
  auto frequency_scale_gpu = upload_raw(frequency_scale.data(), frequency_scale.size() * sizeof(float));
  auto query_scale_gpu = upload_raw(query_scale.data(), query_scale.size() * sizeof(float));
  struct Case {
    int rotary_dim;
    bool interleaved;
    float scaling;
    bool per_token = false;  // frequency_scale and query_scale
  };
  for (const Case c : {Case{64, false, 1.0f}, Case{64, true, 1.0f}, Case{32, false, 1.0f},
                       Case{32, true, 1.0f}, Case{64, false, 1.2f}, Case{64, false, 1.0f, true},
                       Case{32, false, 1.0f, true}, Case{32, true, 1.0f, true}}) {
    std::vector<float> inv_freq(c.rotary_dim / 2);
    for (int i = 0; i < c.rotary_dim / 2; ++i) {
      inv_freq[i] = 1.0f / std::pow(10000.0f, 2.0f * i / c.rotary_dim);
    }
    auto x = random_vector(num_tokens * row_stride, 51);
    auto x_gpu = upload_rounded(x);
    auto positions_gpu = upload_ints(positions);
    auto inv_freq_gpu = upload_raw(inv_freq.data(), inv_freq.size() * sizeof(float));
    RopeParams params{head_dim, c.rotary_dim, c.interleaved, inv_freq_gpu->as<float>(), c.scaling};
    if (c.per_token) {
      params.frequency_scale = frequency_scale_gpu->as<float>();
      params.query_scale = query_scale_gpu->as<float>();
    }
    gpu_->rope(x_gpu->get(), row_stride, positions_gpu->as<int32_t>(), num_tokens, num_heads,
               params);
    params.inv_freq = inv_freq.data();
    if (c.per_token) {
      params.frequency_scale = frequency_scale.data();
      params.query_scale = query_scale.data();
    }
    cpu_->rope(x.data(), row_stride, positions.data(), num_tokens, num_heads, params);
    expect_close(download(*x_gpu, x.size()), x,
                 "rope rotary_dim " + std::to_string(c.rotary_dim) +
                     (c.interleaved ? " interleaved" : " rotate_half") +
                     (c.per_token ? " per-token scales" : ""));
  }
}

// rope_cache_write against its CPU twin: fused [q | k | v | spare] rows of a mixed batch (a
// prefill chunk, decodes) through a shuffled block table, then attention on what it wrote.
struct RopeCacheCase {
  std::string name;
  HeadLayout heads;
  int rotary_dim;
  bool interleaved;
  float scaling;
  bool per_token = false;  // dynamic NTK frequency_scale and logn query_scale per token
};

TEST_P(CudaOps, RopeCacheWriteMatchesCpuThenAttentionReadsIt) {
  const std::vector<RopeCacheCase> cases = {
      {"gqa rotate_half", {8, 2, 128, 0, 0, 4}, 128, false, 1.0f},
      {"partial interleaved", {4, 2, 64, 0, 0, 2}, 32, true, 1.0f},
      {"partial rotate_half scaled", {4, 4, 64, 0, 0, 1}, 32, false, 1.2f},
      // 8 q heads / 2 KV heads over 4 ranks: rank 3 holds q heads 6..7 and KV head 1 (replicated).
      {"replicated kv rank 3", {2, 1, 80, 6, 1, 4}, 80, false, 1.0f},
      // 16 q / 4 KV heads over 2 ranks, rank 1: q heads 8..15, KV heads 2..3.
      {"kv offset rank 1 of 2", {8, 2, 128, 8, 2, 4}, 128, true, 1.0f},
      {"gqa rotate_half ntk+logn", {8, 2, 128, 0, 0, 4}, 128, false, 1.0f, true},
      {"partial rotate_half ntk+logn", {4, 4, 64, 0, 0, 1}, 32, false, 1.0f, true},
  };
  // Sequence 0 prefills positions 0..36 (this step: all of them), sequence 1 decodes at 200,
  // sequence 2 decodes at 4000 (large angles), sequence 3 decodes at 0.
  const int block_size = 16, max_blocks = 251;
  const std::vector<int> first = {0, 200, 4000, 0}, count = {37, 1, 1, 1};
  std::vector<int32_t> step_seq, step_pos;
  for (int s = 0; s < 4; ++s) {
    for (int p = first[s]; p < first[s] + count[s]; ++p) {
      step_seq.push_back(s);
      step_pos.push_back(p);
    }
  }
  const int tokens = static_cast<int>(step_seq.size());
  const int num_blocks = 4 * max_blocks;
  std::vector<int32_t> tables(static_cast<size_t>(num_blocks));
  std::iota(tables.begin(), tables.end(), 0);
  std::shuffle(tables.begin(), tables.end(), std::mt19937(95));
  auto tables_gpu = upload_ints(tables);
  auto seq_gpu = upload_ints(step_seq);
  auto pos_gpu = upload_ints(step_pos);
  const PagedBatch batch_gpu{tokens,           seq_gpu->as<int32_t>(), pos_gpu->as<int32_t>(),
                             tables_gpu->as<int32_t>(), max_blocks,   block_size};
  const PagedBatch batch_cpu{tokens,        step_seq.data(), step_pos.data(),
                             tables.data(), max_blocks,      block_size};
  // Per-token scales: 1 for the first prefill tokens (the identity path), growing after.
  std::vector<float> frequency_scale(static_cast<size_t>(tokens)), query_scale(static_cast<size_t>(tokens));
  for (int t = 0; t < tokens; ++t) {
    frequency_scale[static_cast<size_t>(t)] = t < 8 ? 1.0f : 1.0f + 0.25f * static_cast<float>(t);
    query_scale[static_cast<size_t>(t)] = t < 8 ? 1.0f : 1.0f + 0.05f * static_cast<float>(t);
  }
  auto frequency_scale_gpu = upload_raw(frequency_scale.data(), frequency_scale.size() * sizeof(float));
  auto query_scale_gpu = upload_raw(query_scale.data(), query_scale.size() * sizeof(float));
  uint32_t seed = 96;
  for (const RopeCacheCase& c : cases) {
    const HeadLayout& h = c.heads;
    const int64_t q_width = static_cast<int64_t>(h.num_q_heads) * h.head_dim;
    const int64_t kv_width = static_cast<int64_t>(h.num_kv_heads) * h.head_dim;
    const int64_t row_stride = q_width + 2 * kv_width + 8;
    std::vector<float> inv_freq(c.rotary_dim / 2);
    for (int i = 0; i < c.rotary_dim / 2; ++i) {
      inv_freq[i] = 1.0f / std::pow(10000.0f, 2.0f * i / c.rotary_dim);
    }
    auto inv_freq_gpu = upload_raw(inv_freq.data(), inv_freq.size() * sizeof(float));
    auto qkv = random_vector(static_cast<size_t>(tokens) * row_stride, ++seed);
    auto qkv_gpu = upload_rounded(qkv);
    // Caches start random, so slots the op must not touch are checked too.
    const size_t cache_elements = static_cast<size_t>(num_blocks) * block_size * kv_width;
    auto key_cache = random_vector(cache_elements, ++seed);
    auto value_cache = random_vector(cache_elements, ++seed);
    auto key_cache_gpu = upload_rounded(key_cache);
    auto value_cache_gpu = upload_rounded(value_cache);

    RopeParams rope{h.head_dim, c.rotary_dim, c.interleaved, inv_freq_gpu->as<float>(), c.scaling};
    if (c.per_token) {
      rope.frequency_scale = frequency_scale_gpu->as<float>();
      rope.query_scale = query_scale_gpu->as<float>();
    }
    gpu_->rope_cache_write(qkv_gpu->get(), row_stride, pos_gpu->as<int32_t>(), tokens, h, rope,
                           batch_gpu, key_cache_gpu->get(), value_cache_gpu->get());
    rope.inv_freq = inv_freq.data();
    if (c.per_token) {
      rope.frequency_scale = frequency_scale.data();
      rope.query_scale = query_scale.data();
    }
    cpu_->rope_cache_write(qkv.data(), row_stride, step_pos.data(), tokens, h, rope, batch_cpu,
                           key_cache.data(), value_cache.data());
    const auto qkv_out = download(*qkv_gpu, qkv.size());
    const auto key_out = download(*key_cache_gpu, cache_elements);
    const auto value_out = download(*value_cache_gpu, cache_elements);
    expect_close(qkv_out, qkv, c.name + ": qkv rows");
    expect_close(key_out, key_cache, c.name + ": key cache");
    EXPECT_EQ(value_out, value_cache) << c.name << ": value cache (a copy)";

    // Attention over the written cache, against the CPU on the GPU's (rounded) q and caches.
    const float scale = 1.0f / std::sqrt(static_cast<float>(h.head_dim));
    auto out_gpu = allocate(static_cast<size_t>(tokens) * q_width);
    gpu_->attention(qkv_gpu->get(), row_stride, key_cache_gpu->get(), value_cache_gpu->get(),
                    batch_gpu, h, scale, out_gpu->get());
    std::vector<float> expected(static_cast<size_t>(tokens) * q_width);
    cpu_->attention(qkv_out.data(), row_stride, key_out.data(), value_out.data(), batch_cpu, h,
                    scale, expected.data());
    expect_close(download(*out_gpu, expected.size()), expected, c.name + ": attention");
  }
}

TEST_P(CudaOps, RopeCacheWriteRejectsMismatchedTokenCounts) {
  const std::vector<int32_t> zeros = {0, 0};
  auto ints = upload_ints(zeros);
  auto buffer = allocate(1024);
  auto inv_freq = upload_raw(std::vector<float>(4, 1.0f).data(), 4 * sizeof(float));
  const PagedBatch batch{2, ints->as<int32_t>(), ints->as<int32_t>(), ints->as<int32_t>(), 1, 16};
  const HeadLayout heads{1, 1, 8, 0, 0, 1};
  const RopeParams rope{8, 8, false, inv_freq->as<float>(), 1.0f};
  EXPECT_THROW(gpu_->rope_cache_write(buffer->get(), 24, ints->as<int32_t>(), 1, heads, rope,
                                      batch, buffer->get(), buffer->get()),
               Error);
}

TEST_P(CudaOps, SiluMulAddAndCopyRows) {
  const int rows = 3;
  const int64_t inter = 37;
  auto gate_up = random_vector(rows * 2 * inter, 61, 3.0f);
  auto gate_up_gpu = upload_rounded(gate_up);
  auto act_gpu = allocate(rows * inter);
  gpu_->silu_mul(gate_up_gpu->get(), rows, inter, act_gpu->get());
  std::vector<float> act(rows * inter);
  cpu_->silu_mul(gate_up.data(), rows, inter, act.data());
  expect_close(download(*act_gpu, act.size()), act, "silu_mul");

  const int64_t n = 100003;
  auto x = random_vector(n, 62), y = random_vector(n, 63);
  auto x_gpu = upload_rounded(x);
  auto y_gpu = upload_rounded(y);
  gpu_->add(x_gpu->get(), y_gpu->get(), n);
  cpu_->add(x.data(), y.data(), n);
  expect_close(download(*x_gpu, n), x, "add");

  for (const int64_t cols : {40, 7}) {
    auto src = random_vector(6 * cols, 64);
    auto src_gpu = upload_rounded(src);
    const std::vector<int32_t> rows_picked = {5, 0, 3, 3};
    auto rows_gpu = upload_ints(rows_picked);
    auto dst_gpu = allocate(rows_picked.size() * cols);
    gpu_->copy_rows(src_gpu->get(), rows_gpu->as<int32_t>(), 4, cols, dst_gpu->get());
    std::vector<float> expected(rows_picked.size() * cols);
    cpu_->copy_rows(src.data(), rows_picked.data(), 4, cols, expected.data());
    EXPECT_EQ(download(*dst_gpu, expected.size()), expected) << "copy_rows cols " << cols;
  }
}

TEST_P(CudaOps, ScatterAddRowsMatchesCpu) {
  const int64_t cols = 72;
  const int dst_rows = 9;
  const std::vector<int32_t> rows = {7, 0, 3, 8, 5};  // distinct, as the op requires
  const std::vector<float> weights = {0.5f, -1.25f, 2.0f, 0.0f, 1.0f};
  auto src = random_vector(rows.size() * cols, 66);
  auto dst = random_vector(dst_rows * cols, 67);
  auto src_gpu = upload_rounded(src);
  auto dst_gpu = upload_rounded(dst);
  auto rows_gpu = upload_ints(rows);
  auto weights_gpu = upload_raw(weights.data(), weights.size() * sizeof(float));
  gpu_->scatter_add_rows(src_gpu->get(), rows_gpu->as<int32_t>(), weights_gpu->as<float>(),
                         static_cast<int>(rows.size()), cols, dst_gpu->get());
  cpu_->scatter_add_rows(src.data(), rows.data(), weights.data(), static_cast<int>(rows.size()),
                         cols, dst.data());
  expect_close(download(*dst_gpu, dst.size()), dst, "scatter_add_rows");
}

TEST_P(CudaOps, ArgmaxTakesTheLowestIndexOnTies) {
  const int rows = 4;
  const int64_t cols = 5000;
  auto logits = random_vector(rows * cols, 71);
  logits[10] = logits[4000] = logits[4999] = 7.0f;                    // row 0: a three-way tie
  std::fill(logits.begin() + cols, logits.begin() + 2 * cols, 0.0f);  // row 1: all equal
  logits[3 * cols + 4999] = 9.0f;                                     // row 3: the last column
  auto logits_gpu = upload_rounded(logits);
  Buffer out_gpu(*gpu_, rows * sizeof(int32_t));
  gpu_->argmax(logits_gpu->get(), rows, cols, out_gpu.as<int32_t>());
  std::vector<int32_t> got(rows), expected(rows);
  gpu_->copy_to_host(got.data(), out_gpu.get(), rows * sizeof(int32_t));
  cpu_->argmax(logits.data(), rows, cols, expected.data());
  EXPECT_EQ(got, expected);
  EXPECT_EQ(got[0], 10);
  EXPECT_EQ(got[1], 0);
  EXPECT_EQ(got[3], 4999);
}

// One attention scenario: sequences of `lengths` tokens whose last `new_tokens` are this step's
// queries. The whole context is written with cache_write (itself compared exactly), then the
// step's tokens attend through a shuffled block table.
struct AttentionCase {
  std::string name;
  std::vector<int> lengths;
  std::vector<int> new_tokens;
  HeadLayout heads;
  int block_size = 16;
};

class CudaAttention : public CudaOps {
 protected:
  void run(const AttentionCase& c) {
    const int num_seqs = static_cast<int>(c.lengths.size());
    const HeadLayout& h = c.heads;
    const int64_t kv_width = static_cast<int64_t>(h.num_kv_heads) * h.head_dim;
    const int64_t q_width = static_cast<int64_t>(h.num_q_heads) * h.head_dim;
    // Block tables over a shuffled pool with spare blocks.
    int max_blocks = 0, used_blocks = 0;
    for (int len : c.lengths) {
      const int blocks = (len + c.block_size - 1) / c.block_size;
      max_blocks = std::max(max_blocks, blocks);
      used_blocks += blocks;
    }
    const int num_blocks = used_blocks + 3;
    std::vector<int32_t> pool(num_blocks);
    std::iota(pool.begin(), pool.end(), 0);
    std::shuffle(pool.begin(), pool.end(), std::mt19937(81));
    std::vector<int32_t> tables(static_cast<size_t>(num_seqs) * max_blocks, 0);
    for (int s = 0, next = 0; s < num_seqs; ++s) {
      for (int b = 0; b < (c.lengths[s] + c.block_size - 1) / c.block_size; ++b) {
        tables[static_cast<size_t>(s) * max_blocks + b] = pool[next++];
      }
    }
    auto tables_gpu = upload_ints(tables);

    // Every position's K and V, laid out like a fused QKV row: [k | v | 8 spare], stride below.
    std::vector<int32_t> all_seq, all_pos;
    for (int s = 0; s < num_seqs; ++s) {
      for (int p = 0; p < c.lengths[s]; ++p) {
        all_seq.push_back(s);
        all_pos.push_back(p);
      }
    }
    const int all_tokens = static_cast<int>(all_seq.size());
    const int64_t kv_stride = 2 * kv_width + 8;
    auto kv_rows = random_vector(static_cast<size_t>(all_tokens) * kv_stride, 82);
    auto kv_rows_gpu = upload_rounded(kv_rows);
    auto all_seq_gpu = upload_ints(all_seq);
    auto all_pos_gpu = upload_ints(all_pos);
    const size_t cache_elements = static_cast<size_t>(num_blocks) * c.block_size * kv_width;
    auto key_cache_gpu = allocate(cache_elements);
    auto value_cache_gpu = allocate(cache_elements);
    gpu_->fill_zero(key_cache_gpu->get(), cache_elements * element_bytes());
    gpu_->fill_zero(value_cache_gpu->get(), cache_elements * element_bytes());
    std::vector<float> key_cache(cache_elements, 0.0f), value_cache(cache_elements, 0.0f);
    {
      const PagedBatch write_gpu{all_tokens,
                                 all_seq_gpu->as<int32_t>(),
                                 all_pos_gpu->as<int32_t>(),
                                 tables_gpu->as<int32_t>(),
                                 max_blocks,
                                 c.block_size};
      const char* base = static_cast<const char*>(kv_rows_gpu->get());
      gpu_->cache_write(base, base + kv_width * element_bytes(), kv_stride, write_gpu, h,
                        key_cache_gpu->get(), value_cache_gpu->get());
      const PagedBatch write_cpu{all_tokens,    all_seq.data(), all_pos.data(),
                                 tables.data(), max_blocks,     c.block_size};
      cpu_->cache_write(kv_rows.data(), kv_rows.data() + kv_width, kv_stride, write_cpu, h,
                        key_cache.data(), value_cache.data());
      ASSERT_EQ(download(*key_cache_gpu, cache_elements), key_cache) << c.name << ": key cache";
      ASSERT_EQ(download(*value_cache_gpu, cache_elements), value_cache)
          << c.name << ": value cache";
    }

    // This step's queries, in a fused-QKV-like row (q then 2 * kv_width of other columns).
    std::vector<int32_t> step_seq, step_pos;
    for (int s = 0; s < num_seqs; ++s) {
      for (int p = c.lengths[s] - c.new_tokens[s]; p < c.lengths[s]; ++p) {
        step_seq.push_back(s);
        step_pos.push_back(p);
      }
    }
    const int tokens = static_cast<int>(step_seq.size());
    const int64_t q_stride = q_width + 2 * kv_width;
    auto q = random_vector(static_cast<size_t>(tokens) * q_stride, 83);
    auto q_gpu = upload_rounded(q);
    auto step_seq_gpu = upload_ints(step_seq);
    auto step_pos_gpu = upload_ints(step_pos);
    const float scale = 1.0f / std::sqrt(static_cast<float>(h.head_dim));
    auto out_gpu = allocate(static_cast<size_t>(tokens) * q_width);
    const PagedBatch step_gpu{tokens,
                              step_seq_gpu->as<int32_t>(),
                              step_pos_gpu->as<int32_t>(),
                              tables_gpu->as<int32_t>(),
                              max_blocks,
                              c.block_size};
    gpu_->attention(q_gpu->get(), q_stride, key_cache_gpu->get(), value_cache_gpu->get(), step_gpu,
                    h, scale, out_gpu->get());
    std::vector<float> expected(static_cast<size_t>(tokens) * q_width);
    const PagedBatch step_cpu{tokens,        step_seq.data(), step_pos.data(),
                              tables.data(), max_blocks,      c.block_size};
    cpu_->attention(q.data(), q_stride, key_cache.data(), value_cache.data(), step_cpu, h, scale,
                    expected.data());
    expect_close(download(*out_gpu, expected.size()), expected, c.name);
  }
};

TEST_P(CudaAttention, DecodeBatchOfManyLengthsSplitsTheKeys) {
  // Lengths up to 2000 in blocks of 16: the planner splits the keys (flash-decoding path).
  const std::vector<int> lengths = {1, 2, 15, 16, 17, 100, 513, 1000, 2000};
  run({"decode group 4", lengths, std::vector<int>(lengths.size(), 1), {8, 2, 128, 0, 0, 4}});
  run({"decode group 1", lengths, std::vector<int>(lengths.size(), 1), {4, 4, 64, 0, 0, 1}});
  run({"decode group 8", {1, 33, 1500}, {1, 1, 1}, {8, 1, 128, 0, 0, 8}, 32});
}

TEST_P(CudaAttention, DecodeOfShortContextsRunsOneSplitAndNoReduce) {
  // A block table of at most kMinSplitKeys (64) positions: the planner keeps one split, and the
  // attention kernel writes the normalised output itself (no partials, no reduce kernel).
  run({"decode single split group 4", {1, 20, 48}, {1, 1, 1}, {8, 2, 128, 0, 0, 4}});
  run({"decode single split group 8", {5, 64}, {1, 1}, {8, 1, 64, 0, 0, 8}, 8});
  run({"decode single split replicated kv", {3, 33}, {1, 1}, {2, 1, 80, 6, 1, 4}});
}

TEST_P(CudaAttention, PrefillOfOneLongSequence) {
  run({"prefill group 1", {300}, {300}, {4, 4, 64, 0, 0, 1}});
  run({"prefill group 4 dim 128", {257}, {257}, {8, 2, 128, 0, 0, 4}});
}

TEST_P(CudaAttention, MixedPrefillAndDecodeBatch) {
  run({"mixed group 8 dim 256", {50, 700, 33, 1}, {50, 1, 5, 1}, {8, 1, 256, 0, 0, 8}});
  run({"mixed group 4", {64, 1200, 9}, {64, 1, 9}, {8, 2, 128, 0, 0, 4}, 8});
}

TEST_P(CudaAttention, GroupsLargerThanOneCtaAndReplicatedKvHeads) {
  // ChatGLM2-like: 16 q heads share one KV head (two head chunks per KV head).
  run({"group 16", {40, 900}, {40, 1}, {16, 1, 128, 0, 0, 16}});
  // 8 q heads / 2 KV heads over 4 ranks: rank 3 holds q heads 6..7 and KV head 1 (replicated).
  run({"replicated kv rank 3", {70, 600}, {70, 1}, {2, 1, 80, 6, 1, 4}});
  // Rank 1 of 4 reads KV head 0 with q heads 2..3.
  run({"replicated kv rank 1", {70, 600}, {70, 1}, {2, 1, 64, 2, 0, 4}});
  // 16 q heads / 4 KV heads over 2 ranks: rank 1 holds q heads 8..15 and KV heads 2..3.
  run({"kv offset rank 1 of 2", {90, 300}, {90, 1}, {8, 2, 128, 8, 2, 4}});
}

TEST_P(CudaAttention, RejectsHeadDimNotAMultipleOf8) {
  const std::vector<int32_t> zeros = {0};
  auto ints = upload_ints(zeros);
  auto buffer = allocate(1024);
  const PagedBatch batch{1, ints->as<int32_t>(), ints->as<int32_t>(), ints->as<int32_t>(), 1, 16};
  const HeadLayout heads{1, 1, 12, 0, 0, 1};
  EXPECT_THROW(gpu_->attention(buffer->get(), 12, buffer->get(), buffer->get(), batch, heads, 1.0f,
                               buffer->get()),
               Error);
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaOps, ::testing::Values(DType::kBF16, DType::kF16),
                         dtype_test_name);
INSTANTIATE_TEST_SUITE_P(Cuda, CudaAttention, ::testing::Values(DType::kBF16, DType::kF16),
                         dtype_test_name);

TEST(CudaBackend, RejectsFloat32ComputeDtype) {
  // Holds in every build: the dtype is refused, or CUDA is not built in at all.
  try {
    make_cuda_backend(0, DType::kF32);
    ADD_FAILURE() << "make_cuda_backend(0, F32) did not raise";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_TRUE(message.find("F32") != std::string::npos ||
                message.find("built without CUDA") != std::string::npos)
        << message;
  }
}

TEST(CudaBackend, CopyBandwidthIsPositive) {
  if (cuda_device_count() == 0) {
    GTEST_SKIP() << "no CUDA device: copy bandwidth needs a GPU (or CUDA is not built in)";
  }
  const double gbps = cuda_copy_bandwidth_gbps(0, size_t{256} << 20);
  std::printf("device 0 copy bandwidth: %.0f GB/s (read + write)\n", gbps);
  EXPECT_GT(gbps, 0.0);
}

}  // namespace
}  // namespace tpserve::kernels
