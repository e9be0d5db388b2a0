// The CPU backend: host memory, float32 compute, ops from kernels/cpu/.
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "common/error.h"
#include "kernels/cpu/cpu_ops.h"

namespace tpserve::kernels {

namespace {

// memcpy with a null pointer is undefined even for 0 bytes (UBSan reports it): an empty step's
// vectors have no data() to copy.
void copy_bytes(void* dst, const void* src, size_t bytes) {
  if (bytes != 0) std::memcpy(dst, src, bytes);
}

constexpr size_t kHugePage = size_t{2} << 20;

const float* f(const void* p) { return static_cast<const float*>(p); }
float* f(void* p) { return static_cast<float*>(p); }

class CpuBackend final : public Backend {
 public:
  std::string_view name() const override { return "cpu"; }
  DType compute_dtype() const override { return DType::kF32; }

  void* allocate(size_t bytes) override {
    // 64-byte alignment for vector loads; aligned_alloc wants a multiple of the alignment. Blocks
    // of 2 MiB and more (weights, KV cache) are 2 MiB aligned and asked to use transparent huge
    // pages: first touching a 1 GiB weight is then 512 page faults, not 262144.
    const size_t alignment = bytes >= kHugePage ? kHugePage : 64;
    size_t rounded = (bytes + alignment - 1) / alignment * alignment;
    void* ptr = std::aligned_alloc(alignment, rounded == 0 ? 64 : rounded);
    if (ptr == nullptr) raise(ErrorCode::kResourceExhausted, "cpu: cannot allocate {} bytes", bytes);
    if (alignment == kHugePage) (void)::madvise(ptr, rounded, MADV_HUGEPAGE);  // a hint
    return ptr;
  }
  void release(void* ptr) override { std::free(ptr); }
  void copy_to_device(void* dst, const void* src, size_t bytes) override { copy_bytes(dst, src, bytes); }
  void copy_to_host(void* dst, const void* src, size_t bytes) override { copy_bytes(dst, src, bytes); }
  void fill_zero(void* ptr, size_t bytes) override { std::memset(ptr, 0, bytes); }
  void upload_f32(void* dst, const float* src, int64_t n) override {
    copy_bytes(dst, src, sizeof(float) * n);
  }
  void upload(void* dst, DType src_dtype, const void* src, int64_t n) override {
    if (n > 0) convert_to_f32(src_dtype, src, f(dst), n);
  }
  void* allocate_host(size_t bytes) override { return allocate(bytes); }
  void release_host(void* ptr) override { release(ptr); }
  bool host_memory() const override { return true; }
  void download_f32(float* dst, const void* src, int64_t n) override {
    copy_bytes(dst, src, sizeof(float) * n);
  }
  void synchronize() override {}

  void embedding(const int32_t* ids, int num_tokens, const void* table, int64_t row_begin,
                 int64_t num_rows, int64_t hidden, void* out) override {
    cpu::embedding(ids, num_tokens, f(table), row_begin, num_rows, hidden, f(out));
  }
  void rms_norm(const void* x, const void* weight, int rows, int64_t cols, float eps,
                void* out) override {
    cpu::rms_norm(f(x), f(weight), rows, cols, eps, f(out));
  }
  void linear(const void* x, const void* weight, const void* bias, int m, int64_t n, int64_t k,
              void* out) override {
    cpu::linear(f(x), f(weight), f(bias), m, n, k, f(out));
  }
  bool has_quantized_linear() const override { return true; }
  void quantized_linear(const void* x, const QuantizedMatrix& weight, const void* bias, int m,
                        void* out) override {
    cpu::quantized_linear(f(x), weight, f(bias), m, f(out));
  }
  void rope(void* x, int64_t row_stride, const int32_t* positions, int num_tokens, int num_heads,
            const RopeParams& params) override {
    cpu::rope(f(x), row_stride, positions, num_tokens, num_heads, params);
  }
  void cache_write(const void* key, const void* value, int64_t row_stride,
                   const PagedBatch& batch, const HeadLayout& heads, void* key_cache,
                   void* value_cache) override {
    cpu::cache_write(f(key), f(value), row_stride, batch, heads, f(key_cache), f(value_cache));
  }
  void rope_cache_write(void* qkv, int64_t row_stride, const int32_t* positions, int num_tokens,
                        const HeadLayout& heads, const RopeParams& rope, const PagedBatch& batch,
                        void* key_cache, void* value_cache) override {
    cpu::rope_cache_write(f(qkv), row_stride, positions, num_tokens, heads, rope, batch,
                          f(key_cache), f(value_cache));
  }
  void attention(const void* q, int64_t q_row_stride, const void* key_cache,
                 const void* value_cache, const PagedBatch& batch, const HeadLayout& heads,
                 float scale, void* out) override {
    cpu::attention(f(q), q_row_stride, f(key_cache), f(value_cache), batch, heads, scale, f(out));
  }
  bool has_int8_kv_cache() const override { return true; }
  void cache_write_int8(const void* key, const void* value, int64_t row_stride,
                        const PagedBatch& batch, const HeadLayout& heads,
                        const Int8KvCache& cache) override {
    cpu::cache_write_int8(f(key), f(value), row_stride, batch, heads, cache);
  }
  void rope_cache_write_int8(void* qkv, int64_t row_stride, const int32_t* positions,
                             int num_tokens, const HeadLayout& heads, const RopeParams& rope,
                             const PagedBatch& batch, const Int8KvCache& cache) override {
    cpu::rope_cache_write_int8(f(qkv), row_stride, positions, num_tokens, heads, rope, batch,
                               cache);
  }
  void attention_int8(const void* q, int64_t q_row_stride, const Int8KvCache& cache,
                      const PagedBatch& batch, const HeadLayout& heads, float scale,
                      void* out) override {
    cpu::attention_int8(f(q), q_row_stride, cache, batch, heads, scale, f(out));
  }
  void copy_rows(const void* src, const int32_t* rows, int num_rows, int64_t cols,
                 void* dst) override {
    cpu::copy_rows(f(src), rows, num_rows, cols, f(dst));
  }
  void scatter_add_rows(const void* src, const int32_t* rows, const float* row_weights,
                        int num_rows, int64_t cols, void* dst) override {
    cpu::scatter_add_rows(f(src), rows, row_weights, num_rows, cols, f(dst));
  }
  void silu_mul(const void* gate_up, int rows, int64_t inter, void* out) override {
    cpu::silu_mul(f(gate_up), rows, inter, f(out));
  }
  void add(void* x, const void* y, int64_t n) override { cpu::add(f(x), f(y), n); }
  void add_rms_norm(void* x, const void* y, const void* weight, int rows, int64_t cols, float eps,
                    void* out) override {
    cpu::add_rms_norm(f(x), f(y), f(weight), rows, cols, eps, f(out));
  }
  void argmax(const void* logits, int rows, int64_t cols, int32_t* out) override {
    cpu::argmax(f(logits), rows, cols, out);
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace tpserve::kernels
