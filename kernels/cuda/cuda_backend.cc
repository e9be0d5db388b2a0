// The CUDA backend: device memory from cudaMalloc, every op on one non-blocking stream owned by the
// backend, kernels from kernels/cuda/*.cu, GEMM through cuBLASLt. Host-visible results
// (copy_to_host, download_f32) synchronize the stream before returning.
#include "kernels/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "common/error.h"
#include "kernels/cuda/cublaslt_linear.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/kv_int8.h"
#include "kernels/cuda/quantized_linear.h"
#include "kernels/quantized_host.h"

namespace tpserve::kernels {

namespace {

using namespace cuda;

constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;
// upload_f32 / download_f32 move data through two pinned host buffers (double buffering: the host
// fills one while the DMA drains the other) and matching device float32 buffers.
constexpr int64_t kStagingFloats = int64_t{1} << 20;  // 4 MiB per buffer
// quantized_linear: batches up to this many tokens take the fused kernel (32 per launch, each
// reading the weights once); larger ones dequantize row chunks of up to this many bytes into
// scratch for cuBLASLt.
constexpr int kFusedQuantizedTokens = 64;
constexpr int64_t kDequantizeChunkBytes = int64_t{64} << 20;

// Each group's zero point when every min is -scale * an integer zero in [0, 2^bits] (GPTQ, AWQ,
// GGUF Q4_0 / Q8_0: the formats' own form, W = scale * (code - zero)); empty otherwise (Q4_1's
// free mins, which stay mins).
std::vector<float> integer_zero_points(const QuantizedHostMatrix& host) {
  const std::vector<float>& scales = host.scales();
  const std::vector<float>& mins = host.mins();
  std::vector<float> zeros(scales.size());
  for (size_t i = 0; i < scales.size(); ++i) {
    if (scales[i] == 0.0f) {
      if (mins[i] != 0.0f) return {};
      zeros[i] = 0.0f;
      continue;
    }
    const float zero = -mins[i] / scales[i];
    const float rounded = std::nearbyint(zero);
    if (!(std::abs(zero - rounded) <= 1e-3f) || rounded < 0.0f ||
        rounded > static_cast<float>(1 << host.bits())) {
      return {};
    }
    zeros[i] = rounded;
  }
  return zeros;
}

// The order that sorts an act-order matrix's columns by group, when every group then is one run
// of group_size columns (GPTQ's desc_act g_idx); empty for any other group index.
std::vector<int32_t> act_order_permutation(const QuantizedHostMatrix& host) {
  const std::vector<int32_t>& groups = host.group_index();
  std::vector<int32_t> order(groups.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return groups[a] < groups[b]; });
  for (size_t j = 0; j < order.size(); ++j) {
    if (groups[order[j]] != static_cast<int64_t>(j) / host.group_size()) return {};
  }
  return order;
}

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
  bool has_quantized_linear() const override { return true; }
  void prepare_quantized(QuantizedMatrix& w, const QuantizedHostMatrix& host) override {
    activate();
    if (const std::vector<float> zeros = integer_zero_points(host); !zeros.empty()) {
      upload_f32(const_cast<void*>(w.mins), zeros.data(), static_cast<int64_t>(zeros.size()));
      w.zero_points = true;
    }
    if (w.cols % (w.bits == 4 ? 8 : 4) != 0) return;  // the dequantizing path reads it as it is
    std::vector<int32_t> order;
    if (w.group_index != nullptr) {
      order = act_order_permutation(host);
      if (order.empty()) return;  // an irregular group index: kept for the dequantizing path
    }
    if (order.empty() && w.bits == 8) return;  // already the fused kernel's layout
    const size_t bytes = static_cast<size_t>(w.rows * code_row_bytes(w.bits, w.cols));
    void* scratch = nullptr;
    if (!order.empty()) {
      // The group index buffer (one int32 per column) becomes the column order.
      int32_t* index = const_cast<int32_t*>(w.group_index);
      copy_to_device(index, order.data(), order.size() * sizeof(int32_t));
      TPSERVE_CUDA_CHECK(cudaMalloc(&scratch, bytes));
    }
    try {
      launch_prepare_quantized(stream_, const_cast<uint8_t*>(w.codes), w.bits, w.rows, w.cols,
                               order.empty() ? nullptr : w.group_index, w.bits == 4,
                               static_cast<uint8_t*>(scratch));
      TPSERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    } catch (...) {
      if (scratch != nullptr) cudaFree(scratch);
      throw;
    }
    if (scratch != nullptr) TPSERVE_CUDA_CHECK(cudaFree(scratch));
    w.paired_nibbles = w.bits == 4;
    if (!order.empty()) {
      w.input_order = w.group_index;
      w.group_index = nullptr;
    }
  }
  void quantized_linear(const void* x, const QuantizedMatrix& w, const void* bias, int m,
                        void* out) override {
    if (m <= 0) return;
    activate();
    const int64_t element = dtype_size(dtype_);
    char* y = static_cast<char*>(out);
    if (m <= kFusedQuantizedTokens && fused_quantized_fits(w, x)) {
      const char* in = static_cast<const char*>(x);
      if (w.input_order != nullptr) {
        ensure_scratch(gather_scratch_, gather_scratch_bytes_,
                       static_cast<size_t>(m * w.cols * element));
        launch_gather_columns(dtype_, stream_, x, m, w.cols, w.input_order, gather_scratch_);
        in = static_cast<const char*>(gather_scratch_);
      }
      for (int first = 0; first < m; first += 32) {
        const int count = std::min(32, m - first);
        const QuantizedGemvPlan plan = plan_quantized_gemv(w, count, num_sms_);
        ensure_scratch(partial_scratch_, partial_scratch_bytes_, plan.partial_bytes);
        const size_t counters = static_cast<size_t>(plan.row_blocks) * sizeof(unsigned);
        if (plan.splits > 1 && counters > arrival_bytes_) {
          ensure_scratch(arrivals_, arrival_bytes_, counters);
          TPSERVE_CUDA_CHECK(cudaMemsetAsync(arrivals_, 0, arrival_bytes_, stream_));
        }
        launch_quantized_gemv(dtype_, stream_, plan, in + first * w.cols * element, w, bias,
                              count, y + first * w.rows * element,
                              static_cast<float*>(partial_scratch_),
                              static_cast<unsigned*>(arrivals_));
      }
      return;
    }
    const int64_t row_bytes = w.cols * element;
    const int64_t chunk =
        std::min(w.rows, std::max<int64_t>(64, kDequantizeChunkBytes / row_bytes / 64 * 64));
    ensure_scratch(dequant_scratch_, dequant_scratch_bytes_, static_cast<size_t>(chunk * row_bytes));
    for (int64_t first = 0; first < w.rows; first += chunk) {
      const int64_t rows = std::min(chunk, w.rows - first);
      launch_dequantize_rows(dtype_, stream_, w, first, rows, dequant_scratch_);
      const void* part_bias = bias != nullptr ? static_cast<const char*>(bias) + first * element
                                              : nullptr;
      linear_->run(x, dequant_scratch_, part_bias, m, rows, w.cols, y + first * element, w.rows);
    }
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
    check_rope_cache_write("rope_cache_write", num_tokens, heads, rope, batch);
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
    check_rope_cache_write("rope_cache_write_int8", num_tokens, heads, rope, batch);
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

  // The shapes both fused RoPE + cache writes need; raises naming `op`.
  static void check_rope_cache_write(const char* op, int num_tokens, const HeadLayout& heads,
                                     const RopeParams& rope, const PagedBatch& batch) {
    if (num_tokens != batch.num_tokens || rope.head_dim != heads.head_dim ||
        rope.rotary_dim < 0 || rope.rotary_dim > heads.head_dim || rope.rotary_dim % 2 != 0) {
      raise(ErrorCode::kInvalidArgument,
            "cuda {}: {} tokens for a batch of {}, rotary_dim {} of head_dim {} (heads {})", op,
            num_tokens, batch.num_tokens, rope.rotary_dim, rope.head_dim, heads.head_dim);
    }
  }

  // Grown geometrically, so steady-state steps allocate nothing.
  void ensure_scratch(void*& scratch, size_t& capacity, size_t bytes) {
    if (bytes <= capacity) return;
    const size_t grown = std::max(bytes, capacity + capacity / 2);
    if (scratch != nullptr) {
      TPSERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));  // earlier kernels may still read it
      TPSERVE_CUDA_CHECK(cudaFree(scratch));
      scratch = nullptr;
      capacity = 0;
    }
    TPSERVE_CUDA_CHECK(cudaMalloc(&scratch, grown));
    capacity = grown;
  }
  void ensure_attention_scratch(size_t bytes) {
    ensure_scratch(attention_scratch_, attention_scratch_bytes_, bytes);
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
    for (void* scratch :
         {attention_scratch_, gather_scratch_, partial_scratch_, dequant_scratch_, arrivals_}) {
      if (scratch != nullptr) cudaFree(scratch);
    }
    gather_scratch_ = partial_scratch_ = dequant_scratch_ = arrivals_ = nullptr;
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
  // quantized_linear's: act-order inputs gathered, split-K partials, dequantized row chunks.
  void* gather_scratch_ = nullptr;
  size_t gather_scratch_bytes_ = 0;
  void* partial_scratch_ = nullptr;
  size_t partial_scratch_bytes_ = 0;
  void* dequant_scratch_ = nullptr;
  size_t dequant_scratch_bytes_ = 0;
  void* arrivals_ = nullptr;  // the fused kernel's split counters: zero between calls
  size_t arrival_bytes_ = 0;
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

double cuda_graph_seconds(Backend& backend, int calls, const std::function<void(int)>& body) {
  if (backend.name() != "cuda" || calls <= 0) {
    raise(ErrorCode::kInvalidArgument, "cuda graph timing: {} calls on a {} backend", calls,
          backend.name());
  }
  auto stream = static_cast<cudaStream_t>(backend.native_stream());
  backend.synchronize();
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  const auto cleanup = [&] {
    if (exec != nullptr) cudaGraphExecDestroy(exec);
    if (graph != nullptr) cudaGraphDestroy(graph);
    if (start != nullptr) cudaEventDestroy(start);
    if (stop != nullptr) cudaEventDestroy(stop);
  };
  try {
    TPSERVE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    try {
      for (int i = 0; i < calls; ++i) body(i);
    } catch (...) {
      cudaStreamEndCapture(stream, &graph);
      throw;
    }
    TPSERVE_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    TPSERVE_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    TPSERVE_CUDA_CHECK(cudaEventCreate(&start));
    TPSERVE_CUDA_CHECK(cudaEventCreate(&stop));
    TPSERVE_CUDA_CHECK(cudaGraphLaunch(exec, stream));  // warm-up
    TPSERVE_CUDA_CHECK(cudaEventRecord(start, stream));
    TPSERVE_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    TPSERVE_CUDA_CHECK(cudaEventRecord(stop, stream));
    TPSERVE_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    TPSERVE_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    cleanup();
    return ms * 1e-3 / calls;
  } catch (...) {
    cleanup();
    throw;
  }
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
