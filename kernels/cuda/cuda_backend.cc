// The CUDA backend: device memory from cudaMalloc, every op on one non-blocking stream owned by the
// backend, kernels from kernels/cuda/*.cu, GEMM through cuBLASLt. Host-visible results
// (copy_to_host, download_f32) synchronize the stream before returning.
#include "kernels/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "common/error.h"
#include "kernels/cuda/cublaslt_linear.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/kv_int8.h"

namespace tpserve::kernels {

namespace {

using namespace cuda;

constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;
// upload_f32 / download_f32 move data through two pinned host buffers (double buffering: the host
// fills one while the DMA drains the other) and matching device float32 buffers.
constexpr int64_t kStagingFloats = int64_t{1} << 20;  // 4 MiB per buffer

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device, DType dtype) : device_(device), dtype_(dtype) {
    try {
      TPSERVE_CUDA_CHECK(cudaSetDevice(device_));
      TPSERVE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
      TPSERVE_CUDA_CHECK(
          cudaDeviceGetAttribute(&num_sms_, cudaDevAttrMultiProcessorCount, device_));
      TPSERVE_CUDA_CHECK(cudaMalloc(&workspace_, kCublasWorkspaceBytes));
      TPSERVE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&host_staging_),
                                        2 * kStagingFloats * sizeof(float)));
      TPSERVE_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&device_staging_),
                                    2 * kStagingFloats * sizeof(float)));
      for (cudaEvent_t& event : staging_free_) {
        TPSERVE_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
      }
      linear_ =
          std::make_unique<CublasLtLinear>(dtype_, stream_, workspace_, kCublasWorkspaceBytes);
    } catch (...) {
      release_resources();
      throw;
    }
  }
  ~CudaBackend() override { release_resources(); }

  std::string_view name() const override { return "cuda"; }
  DType compute_dtype() const override { return dtype_; }

  void* allocate(size_t bytes) override {
    activate();
    void* ptr = nullptr;
    TPSERVE_CUDA_CHECK(cudaMalloc(&ptr, std::max<size_t>(bytes, 256)));
    return ptr;
  }
  void release(void* ptr) override {
    if (ptr == nullptr) return;
    activate();
    TPSERVE_CUDA_CHECK(cudaFree(ptr));
  }
  void copy_to_device(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return;
    activate();
    TPSERVE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
    // src may be pinned memory the caller reuses at once: wait until the DMA has read it.
    TPSERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return;
    activate();
    TPSERVE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    TPSERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void fill_zero(void* ptr, size_t bytes) override {
    if (bytes == 0) return;
    activate();
    TPSERVE_CUDA_CHECK(cudaMemsetAsync(ptr, 0, bytes, stream_));
  }

  // Chunks go host -> pinned buffer b (memcpy) -> device float32 buffer b (async DMA) -> convert
  // kernel into dst. Buffer b is refilled only once the event after its DMA has fired; the device
  // buffer's reuse is ordered by the stream. src is fully read when this returns.
  void upload_f32(void* dst, const float* src, int64_t n) override {
    activate();
    char* out = static_cast<char*>(dst);
    const size_t element = dtype_size(dtype_);
    int64_t chunk = 0;
    for (int64_t done = 0; done < n; ++chunk) {
      const int64_t count = std::min(kStagingFloats, n - done);
      const int b = static_cast<int>(chunk % 2);
      float* host = host_staging_ + b * kStagingFloats;
      float* device = device_staging_ + b * kStagingFloats;
      TPSERVE_CUDA_CHECK(cudaEventSynchronize(staging_free_[b]));
      std::memcpy(host, src + done, count * sizeof(float));
      TPSERVE_CUDA_CHECK(
          cudaMemcpyAsync(device, host, count * sizeof(float), cudaMemcpyHostToDevice, stream_));
      TPSERVE_CUDA_CHECK(cudaEventRecord(staging_free_[b], stream_));
      launch_f32_to_dtype(dtype_, stream_, device, count, out + done * element);
      done += count;
    }
  }
  // The file's bytes cross the bus as they are (bf16 / fp16: half the bytes of float32) and are
  // converted on the device. They land in dst itself when the element sizes match (converted in
  // place where the dtypes differ, f16 <-> bf16), else (float32 files) in the device staging
  // buffer, one chunk at a time. A pinned src is copied from directly; any other goes through the
  // pinned staging buffers first, as in upload_f32. Returns once the last copy has read src.
  void upload(void* dst, DType src_dtype, const void* src, int64_t n) override {
    if (!is_weight_dtype(src_dtype)) {
      raise(ErrorCode::kInvalidArgument, "cuda upload: {} is not a weight dtype",
            dtype_name(src_dtype));
    }
    if (n <= 0) return;
    activate();
    const int64_t in_element = dtype_size(src_dtype);
    const int64_t out_element = dtype_size(dtype_);
    const bool pinned = is_pinned(src);
    if (pinned && src_dtype == dtype_) {
      // A load's common case (a bf16 file into bf16, from a loader thread's pinned buffer): one
      // DMA touching no shared staging, on the calling thread's own stream, so loader threads'
      // copies follow each other on the bus without waiting on each other's reads.
      TPSERVE_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(n * in_element),
                                         cudaMemcpyHostToDevice, cudaStreamPerThread));
      TPSERVE_CUDA_CHECK(cudaStreamSynchronize(cudaStreamPerThread));
      return;
    }
    // Everything else goes through the two staging buffers, one upload at a time.
    std::lock_guard<std::mutex> lock(upload_mutex_);
    const bool in_place = in_element == out_element;
    const int64_t staging_bytes = kStagingFloats * int64_t{sizeof(float)};
    const int64_t chunk = in_place && pinned ? n : staging_bytes / in_element;
    const char* from = static_cast<const char*>(src);
    char* out = static_cast<char*>(dst);
    int64_t index = 0;
    for (int64_t done = 0; done < n; ++index) {
      const int64_t count = std::min(chunk, n - done);
      const int b = static_cast<int>(index % 2);
      const void* host = from + done * in_element;
      if (!pinned) {
        char* staging = reinterpret_cast<char*>(host_staging_ + b * kStagingFloats);
        TPSERVE_CUDA_CHECK(cudaEventSynchronize(staging_free_[b]));
        std::memcpy(staging, host, static_cast<size_t>(count * in_element));
        host = staging;
      }
      void* landing = in_place ? static_cast<void*>(out + done * out_element)
                               : static_cast<void*>(device_staging_ + b * kStagingFloats);
      TPSERVE_CUDA_CHECK(cudaMemcpyAsync(landing, host, static_cast<size_t>(count * in_element),
                                         cudaMemcpyHostToDevice, stream_));
      TPSERVE_CUDA_CHECK(cudaEventRecord(staging_free_[b], stream_));
      if (src_dtype != dtype_) {
        launch_convert_weights(src_dtype, dtype_, stream_, landing, count, out + done * out_element);
      }
      done += count;
    }
    // The last copy's event is recorded after every earlier one on the stream.
    TPSERVE_CUDA_CHECK(cudaEventSynchronize(staging_free_[(index - 1) % 2]));
  }
  void* allocate_host(size_t bytes) override {
    activate();
    void* ptr = nullptr;
    TPSERVE_CUDA_CHECK(cudaHostAlloc(&ptr, std::max<size_t>(bytes, 64), cudaHostAllocPortable));
    return ptr;
  }
  void release_host(void* ptr) override {
    if (ptr != nullptr) TPSERVE_CUDA_CHECK(cudaFreeHost(ptr));
  }
  void download_f32(float* dst, const void* src, int64_t n) override {
    activate();
    const char* in = static_cast<const char*>(src);
    const size_t element = dtype_size(dtype_);
    for (int64_t done = 0; done < n;) {
      const int64_t count = std::min(kStagingFloats, n - done);
      launch_dtype_to_f32(dtype_, stream_, in + done * element, count, device_staging_);
      TPSERVE_CUDA_CHECK(cudaMemcpyAsync(host_staging_, device_staging_, count * sizeof(float),
                                         cudaMemcpyDeviceToHost, stream_));
      TPSERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));
      std::memcpy(dst + done, host_staging_, count * sizeof(float));
      done += count;
    }
  }
  void synchronize() override {
    activate();
    TPSERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  // NCCL collectives enqueue on this stream, ordered after the ops that produced their input.
  void* native_stream() override { return stream_; }
  size_t memory_capacity() override {
    activate();
    size_t free_bytes = 0;
    size_t total_bytes = 0;
    TPSERVE_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    return total_bytes;
  }

  void embedding(const int32_t* ids, int num_tokens, const void* table, int64_t row_begin,
                 int64_t num_rows, int64_t hidden, void* out) override {
    activate();
    launch_embedding(dtype_, stream_, ids, num_tokens, table, row_begin, num_rows, hidden, out);
  }
  void rms_norm(const void* x, const void* weight, int rows, int64_t cols, float eps,
                void* out) override {
    activate();
    launch_rms_norm(dtype_, stream_, x, weight, rows, cols, eps, out);
  }
  void linear(const void* x, const void* weight, const void* bias, int m, int64_t n, int64_t k,
              void* out) override {
    activate();
    linear_->run(x, weight, bias, m, n, k, out);
  }
  void rope(void* x, int64_t row_stride, const int32_t* positions, int num_tokens, int num_heads,
            const RopeParams& params) override {
    activate();
    launch_rope(dtype_, stream_, x, row_stride, positions, num_tokens, num_heads, params);
  }
  void cache_write(const void* key, const void* value, int64_t row_stride, const PagedBatch& batch,
                   const HeadLayout& heads, void* key_cache, void* value_cache) override {
    activate();
    launch_cache_write(dtype_, stream_, key, value, row_stride, batch, heads, key_cache,
                       value_cache);
  }
  void rope_cache_write(void* qkv, int64_t row_stride, const int32_t* positions, int num_tokens,
                        const HeadLayout& heads, const RopeParams& rope, const PagedBatch& batch,
                        void* key_cache, void* value_cache) override {
    if (num_tokens != batch.num_tokens || rope.head_dim != heads.head_dim ||
        rope.rotary_dim < 0 || rope.rotary_dim > heads.head_dim || rope.rotary_dim % 2 != 0) {
      raise(ErrorCode::kInvalidArgument,
            "cuda rope_cache_write: {} tokens for a batch of {}, rotary_dim {} of head_dim {} "
            "(heads {})",
            num_tokens, batch.num_tokens, rope.rotary_dim, rope.head_dim, heads.head_dim);
    }
    activate();
    launch_rope_cache_write(dtype_, stream_, qkv, row_stride, positions, num_tokens, heads, rope,
                            batch, key_cache, value_cache);
  }
  void attention(const void* q, int64_t q_row_stride, const void* key_cache,
                 const void* value_cache, const PagedBatch& batch, const HeadLayout& heads,
                 float scale, void* out) override {
    if (batch.num_tokens <= 0) return;
    activate();
    const AttentionPlan plan = plan_attention(batch, heads, num_sms_);
    check_attention_caches(key_cache, value_cache);
    ensure_attention_scratch(plan.scratch_bytes);
    launch_attention(dtype_, stream_, plan, q, q_row_stride, key_cache, value_cache, batch, heads,
                     scale, out, attention_scratch_);
  }
  // The int8 KV cache (kernels/cuda/kv_int8.h): the same kernels and checks as the float cache's.
  bool has_int8_kv_cache() const override { return true; }
  void cache_write_int8(const void* key, const void* value, int64_t row_stride,
                        const PagedBatch& batch, const HeadLayout& heads,
                        const Int8KvCache& cache) override {
    activate();
    launch_cache_write_int8(dtype_, stream_, key, value, row_stride, batch, heads, cache);
  }
  void rope_cache_write_int8(void* qkv, int64_t row_stride, const int32_t* positions,
                             int num_tokens, const HeadLayout& heads, const RopeParams& rope,
                             const PagedBatch& batch, const Int8KvCache& cache) override {
    if (num_tokens != batch.num_tokens || rope.head_dim != heads.head_dim ||
        rope.rotary_dim < 0 || rope.rotary_dim > heads.head_dim || rope.rotary_dim % 2 != 0) {
      raise(ErrorCode::kInvalidArgument,
            "cuda rope_cache_write_int8: {} tokens for a batch of {}, rotary_dim {} of head_dim "
            "{} (heads {})",
            num_tokens, batch.num_tokens, rope.rotary_dim, rope.head_dim, heads.head_dim);
    }
    activate();
    launch_rope_cache_write_int8(dtype_, stream_, qkv, row_stride, positions, num_tokens, heads,
                                 rope, batch, cache);
  }
  void attention_int8(const void* q, int64_t q_row_stride, const Int8KvCache& cache,
                      const PagedBatch& batch, const HeadLayout& heads, float scale,
                      void* out) override {
    if (batch.num_tokens <= 0) return;
    activate();
    const AttentionPlan plan = plan_attention(batch, heads, num_sms_);
    check_attention_caches(cache.key, cache.value);
    ensure_attention_scratch(plan.scratch_bytes);
    launch_attention_int8(dtype_, stream_, plan, q, q_row_stride, cache, batch, heads, scale, out,
                          attention_scratch_);
  }
  void copy_rows(const void* src, const int32_t* rows, int num_rows, int64_t cols,
                 void* dst) override {
    activate();
    launch_copy_rows(dtype_, stream_, src, rows, num_rows, cols, dst);
  }
  void scatter_add_rows(const void* src, const int32_t* rows, const float* row_weights,
                        int num_rows, int64_t cols, void* dst) override {
    activate();
    launch_scatter_add_rows(dtype_, stream_, src, rows, row_weights, num_rows, cols, dst);
  }
  void silu_mul(const void* gate_up, int rows, int64_t inter, void* out) override {
    activate();
    launch_silu_mul(dtype_, stream_, gate_up, rows, inter, out);
  }
  void add(void* x, const void* y, int64_t n) override {
    activate();
    launch_add(dtype_, stream_, x, y, n);
  }
  void add_rms_norm(void* x, const void* y, const void* weight, int rows, int64_t cols, float eps,
                    void* out) override {
    activate();
    launch_add_rms_norm(dtype_, stream_, x, y, weight, rows, cols, eps, out);
  }
  void argmax(const void* logits, int rows, int64_t cols, int32_t* out) override {
    activate();
    launch_argmax(dtype_, stream_, logits, rows, cols, out);
  }

 private:
  // The current device is per host thread; the engine may call from a thread other than the one
  // that built the backend. cudaSetDevice to the already-current device is a cheap no-op.
  void activate() { TPSERVE_CUDA_CHECK(cudaSetDevice(device_)); }

  // Page-locked host memory (cudaHostAlloc / cudaHostRegister): the DMA can read it directly.
  static bool is_pinned(const void* ptr) {
    cudaPointerAttributes attributes{};
    if (cudaPointerGetAttributes(&attributes, ptr) != cudaSuccess) {
      (void)cudaGetLastError();  // pageable memory on old drivers: an error, not a type
      return false;
    }
    return attributes.type == cudaMemoryTypeHost;
  }

  // Grown geometrically, so steady-state steps allocate nothing.
  void ensure_attention_scratch(size_t bytes) {
    if (bytes <= attention_scratch_bytes_) return;
    const size_t grown = std::max(bytes, attention_scratch_bytes_ + attention_scratch_bytes_ / 2);
    if (attention_scratch_ != nullptr) {
      TPSERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));  // earlier kernels may still read it
      TPSERVE_CUDA_CHECK(cudaFree(attention_scratch_));
      attention_scratch_ = nullptr;
      attention_scratch_bytes_ = 0;
    }
    TPSERVE_CUDA_CHECK(cudaMalloc(&attention_scratch_, grown));
    attention_scratch_bytes_ = grown;
  }

  // Teardown: nothing can be done about errors here, and destructors must not throw.
  void release_resources() noexcept {
    cudaSetDevice(device_);
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    linear_.reset();
    for (cudaEvent_t& event : staging_free_) {
      if (event != nullptr) cudaEventDestroy(event);
      event = nullptr;
    }
    if (attention_scratch_ != nullptr) cudaFree(attention_scratch_);
    if (device_staging_ != nullptr) cudaFree(device_staging_);
    if (host_staging_ != nullptr) cudaFreeHost(host_staging_);
    if (workspace_ != nullptr) cudaFree(workspace_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    attention_scratch_ = device_staging_ = nullptr;
    host_staging_ = nullptr;
    workspace_ = nullptr;
    stream_ = nullptr;
  }

  int device_;
  DType dtype_;
  int num_sms_ = 1;
  cudaStream_t stream_ = nullptr;
  void* workspace_ = nullptr;
  float* host_staging_ = nullptr;
  float* device_staging_ = nullptr;
  cudaEvent_t staging_free_[2] = {nullptr, nullptr};
  std::mutex upload_mutex_;  // upload's staging path: loader threads take the buffers in turn
  void* attention_scratch_ = nullptr;
  size_t attention_scratch_bytes_ = 0;
  std::unique_ptr<CublasLtLinear> linear_;
};

}  // namespace

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver / no device: clear the error, report none
    return 0;
  }
  return count;
}

std::unique_ptr<Backend> make_cuda_backend(int device, DType dtype) {
  if (dtype != DType::kBF16 && dtype != DType::kF16) {
    raise(ErrorCode::kInvalidArgument,
          "cuda backend: compute dtype {} unsupported (want BF16 or F16)", dtype_name(dtype));
  }
  const int count = cuda_device_count();
  if (device < 0 || device >= count) {
    raise(ErrorCode::kInvalidArgument, "cuda backend: device {} does not exist ({} devices)",
          device, count);
  }
  return std::make_unique<CudaBackend>(device, dtype);
}

double cuda_copy_bandwidth_gbps(int device, size_t bytes) {
  constexpr int kWarmups = 2;
  constexpr int kReps = 9;
  if (bytes == 0) raise(ErrorCode::kInvalidArgument, "cuda copy bandwidth: 0 bytes to copy");
  TPSERVE_CUDA_CHECK(cudaSetDevice(device));
  void* src = nullptr;
  void* dst = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  const auto cleanup = [&] {
    if (start != nullptr) cudaEventDestroy(start);
    if (stop != nullptr) cudaEventDestroy(stop);
    if (stream != nullptr) cudaStreamDestroy(stream);
    if (src != nullptr) cudaFree(src);
    if (dst != nullptr) cudaFree(dst);
  };
  try {
    TPSERVE_CUDA_CHECK(cudaMalloc(&src, bytes));
    TPSERVE_CUDA_CHECK(cudaMalloc(&dst, bytes));
    TPSERVE_CUDA_CHECK(cudaMemset(src, 0, bytes));
    TPSERVE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    TPSERVE_CUDA_CHECK(cudaEventCreate(&start));
    TPSERVE_CUDA_CHECK(cudaEventCreate(&stop));
    std::vector<float> millis;
    for (int rep = 0; rep < kWarmups + kReps; ++rep) {
      TPSERVE_CUDA_CHECK(cudaEventRecord(start, stream));
      TPSERVE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
      TPSERVE_CUDA_CHECK(cudaEventRecord(stop, stream));
      TPSERVE_CUDA_CHECK(cudaEventSynchronize(stop));
      float ms = 0.0f;
      TPSERVE_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
      if (rep >= kWarmups) millis.push_back(ms);
    }
    cleanup();
    std::nth_element(millis.begin(), millis.begin() + millis.size() / 2, millis.end());
    const double median_s = millis[millis.size() / 2] * 1e-3;
    // Each copy reads `bytes` and writes `bytes`: 2 * bytes of memory traffic.
    return 2.0 * static_cast<double>(bytes) / median_s / 1e9;
  } catch (...) {
    cleanup();
    throw;
  }
}

}  // namespace tpserve::kernels
