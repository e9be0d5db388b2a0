// The op set of the canonical decoder, declared once. A Backend is one device: it owns memory
// and runs the ops on pointers it allocated. Everything above (runtime/) is device-agnostic.
//
// Conventions shared by every backend:
//   - Activations are row-major [tokens, features] in the backend's compute dtype (float32 on the
//     CPU reference; bf16/fp16 with float32 accumulation on CUDA). Small metadata (ids, positions,
//     block tables) is int32.
//   - Linear weights keep the Hugging Face layout [out_features, in_features]: y = x W^T + b.
//   - The paged KV cache of one layer is [num_blocks, block_size, num_kv_heads, head_dim] for K and
//     again for V; a sequence's block table lists its blocks in position order. An int8 cache
//     (Int8KvCache, --kv-cache-dtype int8) has the same shape in int8 codes plus one float32 scale
//     per position and KV head.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "common/dtype.h"
#include "kernels/quantized.h"

namespace tpserve::kernels {

// Rotary position embedding of one rank's heads.
class QuantizedHostMatrix;

struct RopeParams {
  int head_dim = 0;
  int rotary_dim = 0;        // leading dims of each head that rotate (== head_dim for LLaMA/Qwen2)
  bool interleaved = false;  // pairs (2i, 2i+1) as in ChatGLM; false = transformers' rotate_half
                             // (dim i pairs with dim i + rotary_dim/2)
  const float* inv_freq = nullptr;  // [rotary_dim / 2] float32 in backend memory
  float attention_scaling = 1.0f;   // multiplies cos and sin (YaRN's mscale; 1 otherwise)
  // Optional per-token factors, float32 [num_tokens] in backend memory (nullptr: none):
  //   frequency_scale[t] = g > 0 rotates pair i of token t by position * inv_freq[i] *
  //     g^(-2i / (rotary_dim - 2)), i.e. with base * g^(rotary_dim / (rotary_dim - 2)) (dynamic
  //     NTK); needs rotary_dim > 2; g == 1 leaves the angle exactly as without it;
  //   query_scale[t] multiplies every dim (rotated or not) of every head that `rope` is given, after
  //     the rotation; rope_cache_write applies it to the q heads only (Qwen's logn attention).
  const float* frequency_scale = nullptr;
  const float* query_scale = nullptr;
};

// Which KV head each local query head reads. Rank-local q head h is global head q_head_begin + h
// and reads global KV head (q_head_begin + h) / group_size, stored locally at index
// that minus kv_head_begin. This covers N dividing the KV heads, N a multiple of them
// (replicated KV heads) and everything between.
struct HeadLayout {
  int num_q_heads = 0;   // local
  int num_kv_heads = 0;  // local
  int head_dim = 0;
  int q_head_begin = 0;  // global index of local q head 0
  int kv_head_begin = 0;
  int group_size = 1;    // global q heads per KV head
};

// The tokens of one step and where their keys live. All pointers in backend memory.
struct PagedBatch {
  int num_tokens = 0;
  const int32_t* token_seq = nullptr;     // [num_tokens] row of the token's sequence in block_tables
  const int32_t* token_pos = nullptr;     // [num_tokens] position of the token in its sequence
  const int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq]
  int max_blocks_per_seq = 0;
  int block_size = 0;
};

// One layer's int8 paged KV cache: codes [num_blocks, block_size, num_kv_heads, head_dim] int8 for
// K and for V, and scales [num_blocks, block_size, num_kv_heads] float32 beside each, in backend
// memory. Symmetric, one scale per position and KV head: scale = max|x| / 127 over that head's
// head_dim values, code = round(x / scale) clamped to [-127, 127], x ~ code * scale (a zero
// vector: scale 0, codes 0). Per position, so a token's bytes do not depend on which step or
// chunk wrote it (prefix caching, preemption and chunked prefill see the same cache).
struct Int8KvCache {
  int8_t* key = nullptr;
  int8_t* value = nullptr;
  float* key_scale = nullptr;
  float* value_scale = nullptr;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string_view name() const = 0;
  virtual DType compute_dtype() const = 0;

  // Memory. Sizes are in bytes; pointers returned by allocate are only valid on this backend.
  virtual void* allocate(size_t bytes) = 0;
  virtual void release(void* ptr) = 0;
  virtual void copy_to_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void fill_zero(void* ptr, size_t bytes) = 0;
  // Host float32 -> n elements of the compute dtype in backend memory (weights, inputs).
  virtual void upload_f32(void* dst, const float* src, int64_t n) = 0;
  // n elements of `src_dtype` (F32, F16 or BF16) in host memory -> the compute dtype at dst in
  // backend memory: each element stored exactly as upload_f32 stores its float32 widening (no
  // rounding at all where src_dtype is the compute dtype: the bytes are copied). This is how
  // checkpoint weights arrive without a float32 host copy: the CPU widens straight into dst
  // (vectorized, common/dtype.h); CUDA copies the file's bytes over the bus and converts on the
  // device. src from allocate_host saves CUDA a staging copy. Returns once src may be reused.
  // Thread-safe: the CPU widens on the calling thread; CUDA copies a pinned src already in the
  // compute dtype on the calling thread's own stream, and takes its staging buffers (every other
  // case) one call at a time.
  virtual void upload(void* dst, DType src_dtype, const void* src, int64_t n) = 0;
  // Host memory to stage uploads in: page-locked on CUDA (the DMA reads it directly), 64-byte
  // aligned ordinary memory on the CPU. Thread-safe.
  virtual void* allocate_host(size_t bytes) = 0;
  virtual void release_host(void* ptr) = 0;
  // Whether allocate() returns ordinary host memory the caller may write directly (the CPU
  // backend). Such a backend's upload also runs on any number of threads at once.
  virtual bool host_memory() const { return false; }
  // n elements of the compute dtype in backend memory -> host float32 (logits, checks).
  virtual void download_f32(float* dst, const void* src, int64_t n) = 0;
  virtual void synchronize() = 0;
  // The stream this backend runs its ops on (a cudaStream_t on CUDA), for collectives that must be
  // ordered with them; nullptr on the CPU.
  virtual void* native_stream() { return nullptr; }
  // Bytes of device memory this backend's device has in all (0: host memory, no fixed budget).
  virtual size_t memory_capacity() { return 0; }

  // out[t] = table[ids[t] - row_begin] when row_begin <= ids[t] < row_begin + num_rows, else 0
  // (vocab-parallel embedding: the all-reduce over ranks completes the lookup).
  virtual void embedding(const int32_t* ids, int num_tokens, const void* table, int64_t row_begin,
                         int64_t num_rows, int64_t hidden, void* out) = 0;

  // out = x / sqrt(mean(x^2) + eps) * weight, per row; out may alias x.
  virtual void rms_norm(const void* x, const void* weight, int rows, int64_t cols, float eps,
                        void* out) = 0;

  // out[M,N] = x[M,K] W[N,K]^T (+ bias[N]).
  virtual void linear(const void* x, const void* weight, const void* bias, int m, int64_t n,
                      int64_t k, void* out) = 0;

  // out[M, weight.rows] = x[M, weight.cols] W^T (+ bias) with W quantized (kernels/quantized.h;
  // scales and mins in the compute dtype). A backend without the kernel refuses by name.
  virtual void quantized_linear(const void* x, const QuantizedMatrix& weight, const void* bias,
                                int m, void* out);
  // Whether quantized_linear is implemented (formats that may also load as floats, GGUF, ask).
  virtual bool has_quantized_linear() const { return false; }
  // Called once after `device`'s arrays were uploaded from `host` (kernels/quantized_device.h):
  // a backend whose kernels want another layout rewrites them here (CUDA: paired nibbles, act-order
  // columns sorted by group). The default keeps quantized.h's layout.
  virtual void prepare_quantized(QuantizedMatrix& device, const QuantizedHostMatrix& host) {
    (void)device;
    (void)host;
  }

  // Rotates, in place, the first rotary_dim dims of each of num_heads heads of every token's row
  // of x by angle position * inv_freq. Token t's heads start at x + t * row_stride (elements), so
  // q and k can be rotated where the fused QKV GEMM left them.
  virtual void rope(void* x, int64_t row_stride, const int32_t* positions, int num_tokens,
                    int num_heads, const RopeParams& params) = 0;

  // Writes each token's key and value (num_kv_heads * head_dim elements at key + t * row_stride,
  // value + t * row_stride) into the cache slot of its position.
  virtual void cache_write(const void* key, const void* value, int64_t row_stride,
                           const PagedBatch& batch, const HeadLayout& heads, void* key_cache,
                           void* value_cache) = 0;

  // rope + rope + cache_write in one pass over the fused QKV rows [q | k | v] (token t's row at
  // qkv + t * row_stride): rotates, in place, q (heads.num_q_heads heads) and k (heads.num_kv_heads
  // heads, starting at column num_q_heads * head_dim), then writes the rotated k and v (starting
  // at column (num_q_heads + num_kv_heads) * head_dim) into the cache slot of each token.
  // num_tokens must equal batch.num_tokens. Same results as the three ops in that order.
  virtual void rope_cache_write(void* qkv, int64_t row_stride, const int32_t* positions,
                                int num_tokens, const HeadLayout& heads, const RopeParams& rope,
                                const PagedBatch& batch, void* key_cache, void* value_cache) = 0;

  // Causal attention: each query token attends to positions 0..token_pos of its sequence, read
  // through the block table. Token t's query heads start at q + t * q_row_stride; out is
  // [num_tokens, num_q_heads * head_dim].
  virtual void attention(const void* q, int64_t q_row_stride, const void* key_cache,
                         const void* value_cache, const PagedBatch& batch,
                         const HeadLayout& heads, float scale, void* out) = 0;

  // The int8 KV cache (Int8KvCache): the ops above with the cache stored as codes and scales.
  // cache_write_int8 and rope_cache_write_int8 quantize each token's rotated key and its value
  // where cache_write stores them; attention_int8 dequantizes the cache a block at a time as it
  // reads it (the result equals `attention` over the dequantized cache). A backend without the
  // kernels refuses them by name; has_int8_kv_cache says which it is.
  virtual bool has_int8_kv_cache() const { return false; }
  virtual void cache_write_int8(const void* key, const void* value, int64_t row_stride,
                                const PagedBatch& batch, const HeadLayout& heads,
                                const Int8KvCache& cache);
  virtual void rope_cache_write_int8(void* qkv, int64_t row_stride, const int32_t* positions,
                                     int num_tokens, const HeadLayout& heads,
                                     const RopeParams& rope, const PagedBatch& batch,
                                     const Int8KvCache& cache);
  virtual void attention_int8(const void* q, int64_t q_row_stride, const Int8KvCache& cache,
                              const PagedBatch& batch, const HeadLayout& heads, float scale,
                              void* out);

  // out[t, i] = silu(gate_up[t, i]) * gate_up[t, inter + i]; gate_up is [rows, 2 * inter].
  virtual void silu_mul(const void* gate_up, int rows, int64_t inter, void* out) = 0;

  // dst[i] = src[rows[i]] for i < num_rows; rows of `cols` elements.
  virtual void copy_rows(const void* src, const int32_t* rows, int num_rows, int64_t cols,
                         void* dst) = 0;

  // dst[rows[i]] += row_weights[i] * src[i] for i < num_rows; rows of `cols` elements, the
  // inverse of copy_rows with a per-row scale (mixture-of-experts combine). row_weights is float32
  // in backend memory whatever the compute dtype; rows must be distinct within one call.
  virtual void scatter_add_rows(const void* src, const int32_t* rows, const float* row_weights,
                                int num_rows, int64_t cols, void* dst) = 0;

  // x += y, n elements.
  virtual void add(void* x, const void* y, int64_t n) = 0;

  // The residual add fused with the next norm: x += y (rounded as `add` rounds), then
  // out = rms_norm(x) per row; x and y are [rows, cols]. out must not alias x or y. Same results
  // as add(x, y, rows * cols) followed by rms_norm(x, weight, rows, cols, eps, out).
  virtual void add_rms_norm(void* x, const void* y, const void* weight, int rows, int64_t cols,
                            float eps, void* out) = 0;

  // out[r] = argmax of row r of logits[rows, cols] (lowest index on ties).
  virtual void argmax(const void* logits, int rows, int64_t cols, int32_t* out) = 0;
};

std::unique_ptr<Backend> make_cpu_backend();

}  // namespace tpserve::kernels
