// The CUDA int8 KV cache (kernels/cuda/kv_int8.h; bf16 and fp16) against its CPU twin
// (kernels/cpu/kv_int8.cc) on the same inputs.
//
// Inputs are uploaded in the compute dtype and downloaded again as float32, and the CPU twin runs
// on those rounded values. Then:
//   - cache_write_int8 and rope_cache_write_int8 store exactly the CPU's codes and scales (the
//     same float32 operations on the same values: kv_int8.cuh), and leave every other slot as it
//     was. rope_cache_write_int8's rotation is the float rope_cache_write's, bit for bit; against
//     the CPU run on the unrounded float32 rotation, codes move by at most one (the rotated key is
//     rounded to the compute dtype before it is quantized, as the float cache stores it) and
//     scales by the compute dtype's rounding.
//   - attention_int8 agrees with the CPU's attention_int8 over the same cache and queries within
//     cuda_ops_test.cc's tolerances (bf16 1e-2, fp16 2e-3, relative to |ref| + rms(ref)): the two
//     differ only in float32 accumulation order and the output's rounding.
// Shapes: decode over long contexts (the planner splits the keys), prefill, mixed batches, GQA up
// to 16 q heads per KV head, KV heads replicated or offset as on a TP rank, shuffled paged block
// tables over several sequences, head_dim 64 to 256.
//
// Compiles in every build (kernels/cuda_backend.h and kernels/ops.h only); where no CUDA device
// exists (or CUDA is not built in) every test is skipped with a visible message.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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

// An int8 cache of `slots` positions of `kv_heads` heads in host vectors, filled with sentinels
// (codes 99, scales -1: neither a quantizer can produce) so untouched slots are checked too.
struct HostInt8Cache {
  HostInt8Cache(size_t slots, int kv_heads, int head_dim)
      : key(slots * kv_heads * head_dim, 99),
        value(key.size(), 99),
        key_scale(slots * kv_heads, -1.0f),
        value_scale(key_scale.size(), -1.0f) {}
  Int8KvCache view() { return {key.data(), value.data(), key_scale.data(), value_scale.data()}; }
  std::vector<int8_t> key, value;
  std::vector<float> key_scale, value_scale;
};

// The same on the device, starting from a host cache's contents.
struct DeviceInt8Cache {
  DeviceInt8Cache(Backend& backend, const HostInt8Cache& host)
      : key(backend, host.key.size()),
        value(backend, host.value.size()),
        key_scale(backend, host.key_scale.size() * sizeof(float)),
        value_scale(backend, host.value_scale.size() * sizeof(float)) {
    backend.copy_to_device(key.get(), host.key.data(), host.key.size());
    backend.copy_to_device(value.get(), host.value.data(), host.value.size());
    backend.copy_to_device(key_scale.get(), host.key_scale.data(),
                           host.key_scale.size() * sizeof(float));
    backend.copy_to_device(value_scale.get(), host.value_scale.data(),
                           host.value_scale.size() * sizeof(float));
  }
  Int8KvCache view() const {
    return {key.as<int8_t>(), value.as<int8_t>(), key_scale.as<float>(), value_scale.as<float>()};
  }
  void download(Backend& backend, HostInt8Cache& host) const {
    backend.copy_to_host(host.key.data(), key.get(), host.key.size());
    backend.copy_to_host(host.value.data(), value.get(), host.value.size());
    backend.copy_to_host(host.key_scale.data(), key_scale.get(),
                         host.key_scale.size() * sizeof(float));
    backend.copy_to_host(host.value_scale.data(), value_scale.get(),
                         host.value_scale.size() * sizeof(float));
  }
  Buffer key, value, key_scale, value_scale;
};

class CudaKvInt8 : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) {
      GTEST_SKIP() << "no CUDA device: CUDA int8 KV cache tests need a GPU (or CUDA is not "
                      "built in)";
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

  // |gpu - ref| <= tol * (|ref| + rms(ref)) element-wise (cuda_ops_test.cc's check).
  void expect_close(const std::vector<float>& gpu, const std::vector<float>& ref,
                    const std::string& what) {
    ASSERT_EQ(gpu.size(), ref.size()) << what;
    double sum_squares = 0.0;
    for (float r : ref) sum_squares += static_cast<double>(r) * r;
    const double rms = ref.empty() ? 0.0 : std::sqrt(sum_squares / ref.size());
    int misses = 0;
    double worst = 0.0;
    for (size_t i = 0; i < ref.size(); ++i) {
      const double error = std::abs(static_cast<double>(gpu[i]) - ref[i]);
      const double allowed = tolerance() * (std::abs(ref[i]) + rms) + 1e-30;
      worst = std::max(worst, error / allowed);
      if (!(error <= allowed) && ++misses <= 5) {
        ADD_FAILURE() << what << ": element " << i << " gpu " << gpu[i] << " cpu " << ref[i]
                      << " (allowed " << allowed << ")";
      }
    }
    EXPECT_EQ(misses, 0) << what << ": " << misses << " of " << ref.size()
                         << " elements out of tolerance; worst error/allowed " << worst;
  }

  // Codes and scales equal, every byte of both caches (written slots and sentinels alike).
  static void expect_equal(const HostInt8Cache& gpu, const HostInt8Cache& cpu,
                           const std::string& what) {
    const auto count_codes = [](const std::vector<int8_t>& a, const std::vector<int8_t>& b) {
      size_t differ = 0;
      for (size_t i = 0; i < a.size(); ++i) differ += a[i] != b[i];
      return differ;
    };
    const auto count_scales = [](const std::vector<float>& a, const std::vector<float>& b) {
      size_t differ = 0;
      for (size_t i = 0; i < a.size(); ++i) differ += a[i] != b[i];
      return differ;
    };
    EXPECT_EQ(count_codes(gpu.key, cpu.key), 0u) << what << ": key codes differ";
    EXPECT_EQ(count_codes(gpu.value, cpu.value), 0u) << what << ": value codes differ";
    EXPECT_EQ(count_scales(gpu.key_scale, cpu.key_scale), 0u) << what << ": key scales differ";
    EXPECT_EQ(count_scales(gpu.value_scale, cpu.value_scale), 0u)
        << what << ": value scales differ";
  }

  std::unique_ptr<Backend> gpu_;
  std::unique_ptr<Backend> cpu_;
};

std::string dtype_test_name(const ::testing::TestParamInfo<DType>& info) {
  return std::string(dtype_name(info.param));
}

TEST_P(CudaKvInt8, BackendHasTheInt8Cache) { EXPECT_TRUE(gpu_->has_int8_kv_cache()); }

TEST_P(CudaKvInt8, CacheWriteStoresTheCpusCodesAndScales) {
  struct Shape {
    int kv_heads, head_dim;
  };
  // head_dim 8 leaves most of the warp idle; 80 is not a multiple of 32; 256 is 8 per lane.
  for (const Shape shape : {Shape{2, 128}, Shape{3, 80}, Shape{1, 256}, Shape{4, 8}}) {
    const std::string name =
        std::to_string(shape.kv_heads) + " kv heads of " + std::to_string(shape.head_dim);
    const HeadLayout heads{shape.kv_heads, shape.kv_heads, shape.head_dim, 0, 0, 1};
    const int64_t kv_width = static_cast<int64_t>(shape.kv_heads) * shape.head_dim;
    // Three sequences, positions written out of order through shuffled block tables of 8 slots;
    // a spare block stays untouched.
    const int block_size = 8, max_blocks = 4, num_blocks = 3 * max_blocks + 1;
    std::vector<int32_t> tables(3 * max_blocks);
    std::iota(tables.begin(), tables.end(), 0);
    std::shuffle(tables.begin(), tables.end(), std::mt19937(11));
    const std::vector<int32_t> seq = {0, 2, 1, 0, 2, 2, 1, 0, 0, 1};
    const std::vector<int32_t> pos = {0, 31, 9, 17, 0, 8, 10, 16, 5, 24};
    const int tokens = static_cast<int>(seq.size());
    const int64_t row_stride = 2 * kv_width + 8;  // [k | v | 8 spare]
    std::vector<float> rows = random_vector(static_cast<size_t>(tokens) * row_stride, 12, 2.0f);
    // Token 1's key head 0 is zero (scale 0, codes 0); token 2's value head 0 has an outlier;
    // token 3's key head 0 is the hand-computed case of kv_int8_test.cc (scale 0.25 exactly:
    // 0.125 and 0.375 are ties, to even: codes 0 and 2), exact in bf16 and fp16.
    std::fill_n(rows.begin() + row_stride, shape.head_dim, 0.0f);
    rows[2 * row_stride + kv_width + 1] = 60.0f;
    const std::vector<float> hand = {31.75f, -12.5f, 0.125f, 0.375f, -31.75f, 0.0f, 15.875f, 0.25f};
    std::fill_n(rows.begin() + 3 * row_stride, shape.head_dim, 0.0f);
    std::copy(hand.begin(), hand.end(), rows.begin() + 3 * row_stride);
    auto rows_gpu = upload_rounded(rows);
    auto seq_gpu = upload_ints(seq);
    auto pos_gpu = upload_ints(pos);
    auto tables_gpu = upload_ints(tables);

    const size_t slots = static_cast<size_t>(num_blocks) * block_size;
    HostInt8Cache expected(slots, shape.kv_heads, shape.head_dim);
    DeviceInt8Cache cache_gpu(*gpu_, expected);
    const char* base = static_cast<const char*>(rows_gpu->get());
    gpu_->cache_write_int8(base, base + kv_width * element_bytes(), row_stride,
                           {tokens, seq_gpu->as<int32_t>(), pos_gpu->as<int32_t>(),
                            tables_gpu->as<int32_t>(), max_blocks, block_size},
                           heads, cache_gpu.view());
    cpu_->cache_write_int8(rows.data(), rows.data() + kv_width, row_stride,
                           {tokens, seq.data(), pos.data(), tables.data(), max_blocks, block_size},
                           heads, expected.view());
    HostInt8Cache got(slots, shape.kv_heads, shape.head_dim);
    cache_gpu.download(*gpu_, got);
    expect_equal(got, expected, name);

    // The hand-computed head, independently of the CPU twin.
    const int64_t row =
        (int64_t{tables[0 * max_blocks + 17 / block_size]} * block_size + 17 % block_size) *
        shape.kv_heads;
    EXPECT_EQ(got.key_scale[static_cast<size_t>(row)], 0.25f) << name;
    const std::vector<int8_t> hand_codes = {127, -50, 0, 2, -127, 0, 64, 1};
    EXPECT_TRUE(std::equal(hand_codes.begin(), hand_codes.end(),
                           got.key.begin() + row * shape.head_dim))
        << name << ": hand-computed codes";
    // The zero head: scale 0, codes 0.
    const int64_t zero_row =
        (int64_t{tables[2 * max_blocks + 31 / block_size]} * block_size + 31 % block_size) *
        shape.kv_heads;
    EXPECT_EQ(got.key_scale[static_cast<size_t>(zero_row)], 0.0f) << name;
    EXPECT_TRUE(std::all_of(got.key.begin() + zero_row * shape.head_dim,
                            got.key.begin() + (zero_row + 1) * shape.head_dim,
                            [](int8_t c) { return c == 0; }))
        << name << ": zero head";
  }
}

struct RopeCase {
  std::string name;
  HeadLayout heads;
  int rotary_dim;
  bool interleaved;
  float scaling;
  bool per_token = false;  // dynamic NTK frequency_scale and logn query_scale per token
};

TEST_P(CudaKvInt8, RopeCacheWriteRotatesAsTheFloatOpAndQuantizesAsTheCpu) {
  const std::vector<RopeCase> cases = {
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
  // sequence 2 at 4000 (large angles), sequence 3 at 0.
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
  const PagedBatch batch_gpu{tokens, seq_gpu->as<int32_t>(), pos_gpu->as<int32_t>(),
                             tables_gpu->as<int32_t>(), max_blocks, block_size};
  const PagedBatch batch_cpu{tokens, step_seq.data(), step_pos.data(), tables.data(), max_blocks,
                             block_size};
  std::vector<float> frequency_scale(static_cast<size_t>(tokens)),
      query_scale(static_cast<size_t>(tokens));
  for (int t = 0; t < tokens; ++t) {
    frequency_scale[static_cast<size_t>(t)] = t < 8 ? 1.0f : 1.0f + 0.25f * static_cast<float>(t);
    query_scale[static_cast<size_t>(t)] = t < 8 ? 1.0f : 1.0f + 0.05f * static_cast<float>(t);
  }
  auto frequency_scale_gpu =
      upload_raw(frequency_scale.data(), frequency_scale.size() * sizeof(float));
  auto query_scale_gpu = upload_raw(query_scale.data(), query_scale.size() * sizeof(float));
  uint32_t seed = 196;
  for (const RopeCase& c : cases) {
    const HeadLayout& h = c.heads;
    const int64_t q_width = static_cast<int64_t>(h.num_q_heads) * h.head_dim;
    const int64_t kv_width = static_cast<int64_t>(h.num_kv_heads) * h.head_dim;
    const int64_t row_stride = q_width + 2 * kv_width + 8;
    std::vector<float> inv_freq(static_cast<size_t>(c.rotary_dim / 2));
    for (int i = 0; i < c.rotary_dim / 2; ++i) {
      inv_freq[static_cast<size_t>(i)] = 1.0f / std::pow(10000.0f, 2.0f * i / c.rotary_dim);
    }
    auto inv_freq_gpu = upload_raw(inv_freq.data(), inv_freq.size() * sizeof(float));
    auto qkv = random_vector(static_cast<size_t>(tokens) * row_stride, ++seed);
    auto qkv_gpu = upload_rounded(qkv);
    std::vector<float> qkv_float_path = qkv;
    auto qkv_float_path_gpu = upload_rounded(qkv_float_path);
    const size_t slots = static_cast<size_t>(num_blocks) * block_size;
    const size_t cache_elements = slots * static_cast<size_t>(kv_width);
    auto key_cache_gpu = allocate(cache_elements);
    auto value_cache_gpu = allocate(cache_elements);
    HostInt8Cache sentinels(slots, h.num_kv_heads, h.head_dim);
    DeviceInt8Cache cache_gpu(*gpu_, sentinels);

    RopeParams rope{h.head_dim, c.rotary_dim, c.interleaved, inv_freq_gpu->as<float>(), c.scaling};
    if (c.per_token) {
      rope.frequency_scale = frequency_scale_gpu->as<float>();
      rope.query_scale = query_scale_gpu->as<float>();
    }
    gpu_->rope_cache_write_int8(qkv_gpu->get(), row_stride, pos_gpu->as<int32_t>(), tokens, h,
                                rope, batch_gpu, cache_gpu.view());
    gpu_->rope_cache_write(qkv_float_path_gpu->get(), row_stride, pos_gpu->as<int32_t>(), tokens,
                           h, rope, batch_gpu, key_cache_gpu->get(), value_cache_gpu->get());
    const auto rotated = download(*qkv_gpu, qkv.size());
    EXPECT_EQ(rotated, download(*qkv_float_path_gpu, qkv.size()))
        << c.name << ": q and k rotated as rope_cache_write rotates them";
    HostInt8Cache got(slots, h.num_kv_heads, h.head_dim);
    cache_gpu.download(*gpu_, got);

    // The CPU's quantization of the GPU's rotated k (in the compute dtype) and of v.
    HostInt8Cache expected(slots, h.num_kv_heads, h.head_dim);
    cpu_->cache_write_int8(rotated.data() + q_width, rotated.data() + q_width + kv_width,
                           row_stride, batch_cpu, h, expected.view());
    expect_equal(got, expected, c.name);

    // The CPU's whole fused op on float32 (its rotated k never rounded to the compute dtype):
    // codes within one, scales within the compute dtype's rounding.
    rope.inv_freq = inv_freq.data();
    rope.frequency_scale = c.per_token ? frequency_scale.data() : nullptr;
    rope.query_scale = c.per_token ? query_scale.data() : nullptr;
    HostInt8Cache float32(slots, h.num_kv_heads, h.head_dim);
    cpu_->rope_cache_write_int8(qkv.data(), row_stride, step_pos.data(), tokens, h, rope,
                                batch_cpu, float32.view());
    int worst_code = 0;
    float worst_scale = 0.0f;
    size_t moved = 0;
    for (size_t i = 0; i < got.key.size(); ++i) {
      const int step = std::abs(int{got.key[i]} - int{float32.key[i]});
      worst_code = std::max(worst_code, step);
      moved += step != 0;
    }
    for (size_t i = 0; i < got.key_scale.size(); ++i) {
      const float reference = float32.key_scale[i];
      if (reference > 0.0f) {
        worst_scale = std::max(worst_scale, std::fabs(got.key_scale[i] - reference) / reference);
      } else {
        EXPECT_EQ(got.key_scale[i], reference) << c.name << ": key scale " << i;
      }
    }
    EXPECT_LE(worst_code, 1) << c.name << ": key codes against the float32 rotation";
    EXPECT_LE(worst_scale, tolerance()) << c.name << ": key scales against the float32 rotation";
    EXPECT_EQ(got.value, float32.value) << c.name << ": value codes (v is not rotated)";
    EXPECT_EQ(got.value_scale, float32.value_scale) << c.name << ": value scales";
    std::printf("[ kv int8 ] %s %s: %zu of %zu key codes one step from the float32 rotation's, "
                "scales within %.2g\n",
                std::string(dtype_name(GetParam())).c_str(), c.name.c_str(), moved,
                static_cast<size_t>(tokens) * kv_width, worst_scale);

    // Attention over the written cache, against the CPU's on the GPU's q and cache.
    const float scale = 1.0f / std::sqrt(static_cast<float>(h.head_dim));
    auto out_gpu = allocate(static_cast<size_t>(tokens) * q_width);
    gpu_->attention_int8(qkv_gpu->get(), row_stride, cache_gpu.view(), batch_gpu, h, scale,
                         out_gpu->get());
    std::vector<float> reference(static_cast<size_t>(tokens) * q_width);
    cpu_->attention_int8(rotated.data(), row_stride, got.view(), batch_cpu, h, scale,
                         reference.data());
    expect_close(download(*out_gpu, reference.size()), reference, c.name + ": attention");
  }
}

// One attention scenario: sequences of `lengths` tokens whose last `new_tokens` are this step's
// queries. The whole context is written with cache_write_int8 (itself compared exactly), then the
// step's tokens attend through shuffled block tables.
struct AttentionCase {
  std::string name;
  std::vector<int> lengths;
  std::vector<int> new_tokens;
  HeadLayout heads;
  int block_size = 16;
};

class CudaKvInt8Attention : public CudaKvInt8 {
 protected:
  void run(const AttentionCase& c) {
    const int num_seqs = static_cast<int>(c.lengths.size());
    const HeadLayout& h = c.heads;
    const int64_t kv_width = static_cast<int64_t>(h.num_kv_heads) * h.head_dim;
    const int64_t q_width = static_cast<int64_t>(h.num_q_heads) * h.head_dim;
    int max_blocks = 0, used_blocks = 0;
    for (int len : c.lengths) {
      const int blocks = (len + c.block_size - 1) / c.block_size;
      max_blocks = std::max(max_blocks, blocks);
      used_blocks += blocks;
    }
    const int num_blocks = used_blocks + 3;
    std::vector<int32_t> pool(static_cast<size_t>(num_blocks));
    std::iota(pool.begin(), pool.end(), 0);
    std::shuffle(pool.begin(), pool.end(), std::mt19937(81));
    std::vector<int32_t> tables(static_cast<size_t>(num_seqs) * max_blocks, 0);
    for (int s = 0, next = 0; s < num_seqs; ++s) {
      for (int b = 0; b < (c.lengths[s] + c.block_size - 1) / c.block_size; ++b) {
        tables[static_cast<size_t>(s) * max_blocks + b] = pool[static_cast<size_t>(next++)];
      }
    }
    auto tables_gpu = upload_ints(tables);

    // Every position's K and V in rows [k | v | 8 spare]; keys larger than values, as after RoPE.
    std::vector<int32_t> all_seq, all_pos;
    for (int s = 0; s < num_seqs; ++s) {
      for (int p = 0; p < c.lengths[s]; ++p) {
        all_seq.push_back(s);
        all_pos.push_back(p);
      }
    }
    const int all_tokens = static_cast<int>(all_seq.size());
    const int64_t kv_stride = 2 * kv_width + 8;
    auto kv_rows = random_vector(static_cast<size_t>(all_tokens) * kv_stride, 82, 2.0f);
    auto kv_rows_gpu = upload_rounded(kv_rows);
    auto all_seq_gpu = upload_ints(all_seq);
    auto all_pos_gpu = upload_ints(all_pos);
    const size_t slots = static_cast<size_t>(num_blocks) * c.block_size;
    HostInt8Cache cache(slots, h.num_kv_heads, h.head_dim);
    DeviceInt8Cache cache_gpu(*gpu_, cache);
    {
      const char* base = static_cast<const char*>(kv_rows_gpu->get());
      gpu_->cache_write_int8(base, base + kv_width * element_bytes(), kv_stride,
                             {all_tokens, all_seq_gpu->as<int32_t>(), all_pos_gpu->as<int32_t>(),
                              tables_gpu->as<int32_t>(), max_blocks, c.block_size},
                             h, cache_gpu.view());
      cpu_->cache_write_int8(kv_rows.data(), kv_rows.data() + kv_width, kv_stride,
                             {all_tokens, all_seq.data(), all_pos.data(), tables.data(),
                              max_blocks, c.block_size},
                             h, cache.view());
      HostInt8Cache got(slots, h.num_kv_heads, h.head_dim);
      cache_gpu.download(*gpu_, got);
      expect_equal(got, cache, c.name + ": cache");
      if (::testing::Test::HasFailure()) return;
    }

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
    gpu_->attention_int8(q_gpu->get(), q_stride, cache_gpu.view(),
                         {tokens, step_seq_gpu->as<int32_t>(), step_pos_gpu->as<int32_t>(),
                          tables_gpu->as<int32_t>(), max_blocks, c.block_size},
                         h, scale, out_gpu->get());
    std::vector<float> expected(static_cast<size_t>(tokens) * q_width);
    cpu_->attention_int8(q.data(), q_stride, cache.view(),
                         {tokens, step_seq.data(), step_pos.data(), tables.data(), max_blocks,
                          c.block_size},
                         h, scale, expected.data());
    expect_close(download(*out_gpu, expected.size()), expected, c.name);
  }
};

TEST_P(CudaKvInt8Attention, DecodeBatchOfManyLengthsSplitsTheKeys) {
  // Lengths up to 2000 in blocks of 16: the planner splits the keys (flash-decoding path).
  const std::vector<int> lengths = {1, 2, 15, 16, 17, 100, 513, 1000, 2000};
  run({"decode group 4", lengths, std::vector<int>(lengths.size(), 1), {8, 2, 128, 0, 0, 4}});
  run({"decode group 1", lengths, std::vector<int>(lengths.size(), 1), {4, 4, 64, 0, 0, 1}});
  run({"decode group 8", {1, 33, 1500}, {1, 1, 1}, {8, 1, 128, 0, 0, 8}, 32});
  // One sequence, one token, 4000 positions: the most splits one CTA group gets.
  run({"decode one long sequence", {4000}, {1}, {8, 2, 128, 0, 0, 4}});
}

TEST_P(CudaKvInt8Attention, DecodeOfShortContextsRunsOneSplitAndNoReduce) {
  run({"decode single split group 4", {1, 20, 48}, {1, 1, 1}, {8, 2, 128, 0, 0, 4}});
  run({"decode single split group 8", {5, 64}, {1, 1}, {8, 1, 64, 0, 0, 8}, 8});
  run({"decode single split replicated kv", {3, 33}, {1, 1}, {2, 1, 80, 6, 1, 4}});
}

TEST_P(CudaKvInt8Attention, PrefillOfOneLongSequence) {
  run({"prefill group 1", {300}, {300}, {4, 4, 64, 0, 0, 1}});
  run({"prefill group 4 dim 128", {257}, {257}, {8, 2, 128, 0, 0, 4}});
}

TEST_P(CudaKvInt8Attention, MixedPrefillAndDecodeBatch) {
  run({"mixed group 8 dim 256", {50, 700, 33, 1}, {50, 1, 5, 1}, {8, 1, 256, 0, 0, 8}});
  run({"mixed group 4", {64, 1200, 9}, {64, 1, 9}, {8, 2, 128, 0, 0, 4}, 8});
}

TEST_P(CudaKvInt8Attention, GroupsLargerThanOneCtaAndReplicatedKvHeads) {
  run({"group 16", {40, 900}, {40, 1}, {16, 1, 128, 0, 0, 16}});
  run({"replicated kv rank 3", {70, 600}, {70, 1}, {2, 1, 80, 6, 1, 4}});
  run({"replicated kv rank 1", {70, 600}, {70, 1}, {2, 1, 64, 2, 0, 4}});
  run({"kv offset rank 1 of 2", {90, 300}, {90, 1}, {8, 2, 128, 8, 2, 4}});
}

TEST_P(CudaKvInt8, RefusesWhatTheFloatCacheRefuses) {
  const std::vector<int32_t> zeros = {0, 0};
  auto ints = upload_ints(zeros);
  auto buffer = allocate(4096);
  auto inv_freq = upload_raw(std::vector<float>(4, 1.0f).data(), 4 * sizeof(float));
  HostInt8Cache host(16, 1, 16);
  DeviceInt8Cache cache(*gpu_, host);
  // rope_cache_write_int8: token count against the batch's, and rotary_dim against head_dim.
  const PagedBatch batch{2, ints->as<int32_t>(), ints->as<int32_t>(), ints->as<int32_t>(), 1, 16};
  const HeadLayout heads{1, 1, 8, 0, 0, 1};
  const RopeParams rope{8, 8, false, inv_freq->as<float>(), 1.0f};
  EXPECT_THROW(gpu_->rope_cache_write_int8(buffer->get(), 24, ints->as<int32_t>(), 1, heads, rope,
                                           batch, cache.view()),
               Error);
  const RopeParams odd_rotary{16, 7, false, inv_freq->as<float>(), 1.0f};
  const HeadLayout wide{1, 1, 16, 0, 0, 1};
  EXPECT_THROW(gpu_->rope_cache_write_int8(buffer->get(), 48, ints->as<int32_t>(), 2, wide,
                                           odd_rotary, batch, cache.view()),
               Error);
  // attention_int8: head_dim not a multiple of 8, and a misaligned cache.
  const PagedBatch one{1, ints->as<int32_t>(), ints->as<int32_t>(), ints->as<int32_t>(), 1, 16};
  EXPECT_THROW(gpu_->attention_int8(buffer->get(), 12, cache.view(), one, {1, 1, 12, 0, 0, 1},
                                    1.0f, buffer->get()),
               Error);
  Int8KvCache misaligned = cache.view();
  misaligned.key += 8;
  EXPECT_THROW(gpu_->attention_int8(buffer->get(), 16, misaligned, one, {1, 1, 16, 0, 0, 1}, 1.0f,
                                    buffer->get()),
               Error);
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaKvInt8, ::testing::Values(DType::kBF16, DType::kF16),
                         dtype_test_name);
INSTANTIATE_TEST_SUITE_P(Cuda, CudaKvInt8Attention, ::testing::Values(DType::kBF16, DType::kF16),
                         dtype_test_name);

}  // namespace
}  // namespace tpserve::kernels
