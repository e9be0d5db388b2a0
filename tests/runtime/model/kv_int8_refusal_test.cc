// A backend without int8 KV cache kernels (today: CUDA) refuses them by name, and a Model asked for
// an int8 cache on it refuses at construction, naming --kv-cache-dtype, before anything is loaded.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "common/error.h"
#include "kernels/ops.h"
#include "runtime/model/checkpoint_source.h"
#include "runtime/model/local_shard_communicator.h"
#include "runtime/model/model.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

// The CPU backend under another name, with the Backend defaults for the int8 KV cache ops.
class NoInt8Backend : public kernels::Backend {
 public:
  std::string_view name() const override { return "no-int8"; }
  DType compute_dtype() const override { return cpu_->compute_dtype(); }
  void* allocate(size_t bytes) override { return cpu_->allocate(bytes); }
  void release(void* ptr) override { cpu_->release(ptr); }
  void copy_to_device(void* dst, const void* src, size_t bytes) override { cpu_->copy_to_device(dst, src, bytes); }
  void copy_to_host(void* dst, const void* src, size_t bytes) override { cpu_->copy_to_host(dst, src, bytes); }
  void fill_zero(void* ptr, size_t bytes) override { cpu_->fill_zero(ptr, bytes); }
  void upload_f32(void* dst, const float* src, int64_t n) override { cpu_->upload_f32(dst, src, n); }
  void upload(void* dst, DType src_dtype, const void* src, int64_t n) override { cpu_->upload(dst, src_dtype, src, n); }
  void* allocate_host(size_t bytes) override { return cpu_->allocate_host(bytes); }
  void release_host(void* ptr) override { cpu_->release_host(ptr); }
  bool host_memory() const override { return cpu_->host_memory(); }
  void download_f32(float* dst, const void* src, int64_t n) override { cpu_->download_f32(dst, src, n); }
  void synchronize() override { cpu_->synchronize(); }
  void embedding(const int32_t* ids, int num_tokens, const void* table, int64_t row_begin,
                 int64_t num_rows, int64_t hidden, void* out) override {
    cpu_->embedding(ids, num_tokens, table, row_begin, num_rows, hidden, out);
  }
  void rms_norm(const void* x, const void* weight, int rows, int64_t cols, float eps, void* out) override {
    cpu_->rms_norm(x, weight, rows, cols, eps, out);
  }
  void linear(const void* x, const void* weight, const void* bias, int m, int64_t n, int64_t k,
              void* out) override {
    cpu_->linear(x, weight, bias, m, n, k, out);
  }
  void rope(void* x, int64_t row_stride, const int32_t* positions, int num_tokens, int num_heads,
            const kernels::RopeParams& params) override {
    cpu_->rope(x, row_stride, positions, num_tokens, num_heads, params);
  }
  void cache_write(const void* key, const void* value, int64_t row_stride,
                   const kernels::PagedBatch& batch, const kernels::HeadLayout& heads,
                   void* key_cache, void* value_cache) override {
    cpu_->cache_write(key, value, row_stride, batch, heads, key_cache, value_cache);
  }
  void rope_cache_write(void* qkv, int64_t row_stride, const int32_t* positions, int num_tokens,
                        const kernels::HeadLayout& heads, const kernels::RopeParams& rope,
                        const kernels::PagedBatch& batch, void* key_cache, void* value_cache) override {
    cpu_->rope_cache_write(qkv, row_stride, positions, num_tokens, heads, rope, batch, key_cache, value_cache);
  }
  void attention(const void* q, int64_t q_row_stride, const void* key_cache, const void* value_cache,
                 const kernels::PagedBatch& batch, const kernels::HeadLayout& heads, float scale,
                 void* out) override {
    cpu_->attention(q, q_row_stride, key_cache, value_cache, batch, heads, scale, out);
  }
  void silu_mul(const void* gate_up, int rows, int64_t inter, void* out) override {
    cpu_->silu_mul(gate_up, rows, inter, out);
  }
  void copy_rows(const void* src, const int32_t* rows, int num_rows, int64_t cols, void* dst) override {
    cpu_->copy_rows(src, rows, num_rows, cols, dst);
  }
  void scatter_add_rows(const void* src, const int32_t* rows, const float* row_weights, int num_rows,
                        int64_t cols, void* dst) override {
    cpu_->scatter_add_rows(src, rows, row_weights, num_rows, cols, dst);
  }
  void add(void* x, const void* y, int64_t n) override { cpu_->add(x, y, n); }
  void add_rms_norm(void* x, const void* y, const void* weight, int rows, int64_t cols, float eps,
                    void* out) override {
    cpu_->add_rms_norm(x, y, weight, rows, cols, eps, out);
  }
  void argmax(const void* logits, int rows, int64_t cols, int32_t* out) override {
    cpu_->argmax(logits, rows, cols, out);
  }

 private:
  std::unique_ptr<kernels::Backend> cpu_ = kernels::make_cpu_backend();
};

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnimplemented);
    return e.what();
  }
  ADD_FAILURE() << "expected an error";
  return {};
}

TEST(KvInt8Refusal, BackendDefaultsRefuseByName) {
  NoInt8Backend backend;
  EXPECT_FALSE(backend.has_int8_kv_cache());
  EXPECT_TRUE(kernels::make_cpu_backend()->has_int8_kv_cache());
  const kernels::PagedBatch batch;
  const kernels::HeadLayout heads;
  const kernels::RopeParams rope;
  const kernels::Int8KvCache cache;
  const std::string expected = "int8 KV cache on no-int8: not implemented yet";
  EXPECT_EQ(error_of([&] { backend.cache_write_int8(nullptr, nullptr, 0, batch, heads, cache); }), expected);
  EXPECT_EQ(error_of([&] {
              backend.rope_cache_write_int8(nullptr, 0, nullptr, 0, heads, rope, batch, cache);
            }), expected);
  EXPECT_EQ(error_of([&] { backend.attention_int8(nullptr, 0, cache, batch, heads, 1.0f, nullptr); }),
            expected);
}

TEST(KvInt8Refusal, ModelOnABackendWithoutTheKernelsRefusesNamingTheFlag) {
  NoInt8Backend backend;
  LocalShardCommunicator comm(0, 1, backend);
  const ModelConfig config = read_model_config(testing::fixtures_dir() / "qwen2_tied");
  ModelOptions options;
  options.kv_cache_dtype = KvCacheDtype::kInt8;
  EXPECT_EQ(error_of([&] { Model(config, rank_shape(config, 1, 0), backend, comm, options); }),
            "--kv-cache-dtype int8: not implemented on no-int8 yet");
  options.kv_cache_dtype = KvCacheDtype::kAuto;  // the float cache runs on it
  Model model(config, rank_shape(config, 1, 0), backend, comm, options);
  EXPECT_EQ(model.kv_cache_bytes(), static_cast<size_t>(options.num_kv_blocks) * options.block_size *
                                        kv_bytes_per_token(config, model.shape(), 4, KvCacheDtype::kAuto));
}

}  // namespace
}  // namespace tpserve::runtime
