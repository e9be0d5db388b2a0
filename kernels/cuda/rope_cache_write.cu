// RoPE of q and k fused with the KV cache write; twin of rope_cache_write in kernels/cpu/rope.cc
// (rope(q), rope(k), cache_write). At decode the three unfused kernels each move a few KiB and
// are pure launch latency; fused, one CTA per token does it all:
//   1. the token's (cos, sin) per rotary pair, once, into shared memory (sincosf is the accurate
//      libdevice version, as in rope_kernel: angles reach ~1e5 radians at long contexts);
//   2. one thread per (q or k head, pair) rotates the pair in place, and for a k head also stores
//      the rotated pair straight into the key cache slot (no re-read of k);
//   3. k dims past rotary_dim (partial rotary, ChatGLM) and the whole v row are copied to the
//      cache slot; with query_scale (Qwen's logn) the q dims past rotary_dim are scaled in place.
// Dynamic NTK's frequency_scale changes the frequencies of step 1 (inv_freq * g^(-2i / (d - 2)));
// query_scale multiplies the rotated q pairs before they are rounded (kernels/cpu/rope.cc's order).
// Every element is written by exactly one thread and no thread reads what another wrote, so the
// only barrier is the one after step 1.
//
// With an int8 cache (kInt8, launch_rope_cache_write_int8) steps 2 and 3 write nothing to the
// cache; after a second barrier (the rotated k is then in the row, in the compute dtype, visible
// to the whole CTA), each warp quantizes whole k and v heads from the row into their slot
// (quantize_head_int8): the codes of exactly the values the float cache would have stored.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_types.cuh"
#include "kernels/cuda/kv_int8.cuh"
#include "kernels/cuda/kv_int8.h"

namespace tpserve::kernels::cuda {

namespace {

constexpr int kThreads = 256;

struct RopeCacheArgs {
  int64_t row_stride;
  const int32_t* positions;
  const int32_t* token_seq;
  const int32_t* token_pos;
  const int32_t* block_tables;
  int max_blocks_per_seq;
  int block_size;
  int num_q_heads;
  int num_kv_heads;
  int head_dim;
  int half;  // rotary_dim / 2
  bool interleaved;
  const float* inv_freq;
  float attention_scaling;
  const float* frequency_scale;  // [num_tokens] or nullptr
  const float* query_scale;      // [num_tokens] or nullptr
};

template <typename T, bool kInt8>
__global__ void __launch_bounds__(kThreads)
    rope_cache_write_kernel(T* qkv, RopeCacheArgs a, T* key_cache, T* value_cache,
                            Int8KvCache int8_cache) {
  extern __shared__ float2 cos_sin[];  // [half], scaled by attention_scaling
  const int t = blockIdx.x;
  const int head_dim = a.head_dim, half = a.half;
  const int64_t kv_width = static_cast<int64_t>(a.num_kv_heads) * head_dim;
  T* row = qkv + t * a.row_stride;
  const T* key = row + static_cast<int64_t>(a.num_q_heads) * head_dim;
  const T* value = key + kv_width;
  const int pos = a.token_pos[t];
  const int32_t block =
      a.block_tables[static_cast<int64_t>(a.token_seq[t]) * a.max_blocks_per_seq +
                     pos / a.block_size];
  const int64_t slot = static_cast<int64_t>(block) * a.block_size + pos % a.block_size;
  T* key_slot = kInt8 ? nullptr : key_cache + slot * kv_width;
  T* value_slot = kInt8 ? nullptr : value_cache + slot * kv_width;

  const float position = static_cast<float>(a.positions[t]);
  const float growth = a.frequency_scale != nullptr ? a.frequency_scale[t] : 1.0f;
  const float q_scale = a.query_scale != nullptr ? a.query_scale[t] : 1.0f;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float frequency =
        growth == 1.0f ? a.inv_freq[i]
                       : a.inv_freq[i] * powf(growth, -static_cast<float>(2 * i) /
                                                          static_cast<float>(2 * half - 2));
    float sin, cos;
    sincosf(position * frequency, &sin, &cos);
    cos_sin[i] = make_float2(cos * a.attention_scaling, sin * a.attention_scaling);
  }
  __syncthreads();

  // q heads 0..num_q_heads-1, then k heads: contiguous in the row, so head h is at row + h * dim.
  const int rotated = (a.num_q_heads + a.num_kv_heads) * half;
  for (int i = threadIdx.x; i < rotated; i += blockDim.x) {
    const int head = i / half, pair = i % half;
    const int lo = a.interleaved ? 2 * pair : pair;
    const int hi = a.interleaved ? 2 * pair + 1 : pair + half;
    T* h = row + static_cast<int64_t>(head) * head_dim;
    const float2 cs = cos_sin[pair];
    const float x_lo = to_float(h[lo]), x_hi = to_float(h[hi]);
    const float scale = head < a.num_q_heads ? q_scale : 1.0f;
    const T r_lo = from_float<T>((x_lo * cs.x - x_hi * cs.y) * scale);
    const T r_hi = from_float<T>((x_hi * cs.x + x_lo * cs.y) * scale);
    h[lo] = r_lo;
    h[hi] = r_hi;
    if (!kInt8 && head >= a.num_q_heads) {
      T* cached = key_slot + static_cast<int64_t>(head - a.num_q_heads) * head_dim;
      cached[lo] = r_lo;
      cached[hi] = r_hi;
    }
  }

  const int rotary_dim = 2 * half;
  const int tail = head_dim - rotary_dim;  // dims that pass through unrotated
  if (tail > 0) {
    if constexpr (!kInt8) {
      for (int i = threadIdx.x; i < a.num_kv_heads * tail; i += blockDim.x) {
        const int64_t d = static_cast<int64_t>(i / tail) * head_dim + rotary_dim + i % tail;
        key_slot[d] = key[d];
      }
    }
    if (a.query_scale != nullptr) {
      for (int i = threadIdx.x; i < a.num_q_heads * tail; i += blockDim.x) {
        const int64_t d = static_cast<int64_t>(i / tail) * head_dim + rotary_dim + i % tail;
        row[d] = from_float<T>(to_float(row[d]) * q_scale);
      }
    }
  }
  if constexpr (!kInt8) {
    for (int64_t i = threadIdx.x; i < kv_width; i += blockDim.x) value_slot[i] = value[i];
  } else {
    __syncthreads();  // every rotated k element is in the row
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    // Work item i: KV head i / 2, its key (i even) or value (i odd).
    for (int i = warp; i < 2 * a.num_kv_heads; i += kThreads / 32) {
      const int kv_head = i / 2;
      const bool is_key = i % 2 == 0;
      const int64_t cache_row = slot * a.num_kv_heads + kv_head;
      const T* x = (is_key ? key : value) + static_cast<int64_t>(kv_head) * head_dim;
      int8_t* codes = (is_key ? int8_cache.key : int8_cache.value) + cache_row * head_dim;
      float* scale = (is_key ? int8_cache.key_scale : int8_cache.value_scale) + cache_row;
      quantize_head_int8(x, head_dim, codes, scale, lane);
    }
  }
}

RopeCacheArgs rope_cache_args(int64_t row_stride, const int32_t* positions,
                              const HeadLayout& heads, const RopeParams& rope,
                              const PagedBatch& batch) {
  RopeCacheArgs a{};
  a.row_stride = row_stride;
  a.positions = positions;
  a.token_seq = batch.token_seq;
  a.token_pos = batch.token_pos;
  a.block_tables = batch.block_tables;
  a.max_blocks_per_seq = batch.max_blocks_per_seq;
  a.block_size = batch.block_size;
  a.num_q_heads = heads.num_q_heads;
  a.num_kv_heads = heads.num_kv_heads;
  a.head_dim = heads.head_dim;
  a.half = rope.rotary_dim / 2;
  a.interleaved = rope.interleaved;
  a.inv_freq = rope.inv_freq;
  a.attention_scaling = rope.attention_scaling;
  a.frequency_scale = rope.frequency_scale;
  a.query_scale = rope.query_scale;
  return a;
}

}  // namespace

void launch_rope_cache_write(DType dtype, cudaStream_t stream, void* qkv, int64_t row_stride,
                             const int32_t* positions, int num_tokens, const HeadLayout& heads,
                             const RopeParams& rope, const PagedBatch& batch, void* key_cache,
                             void* value_cache) {
  if (num_tokens <= 0) return;
  const RopeCacheArgs a = rope_cache_args(row_stride, positions, heads, rope, batch);
  const size_t smem = static_cast<size_t>(a.half) * sizeof(float2);
  TPSERVE_DISPATCH_DTYPE(dtype, T, {
    rope_cache_write_kernel<T, false><<<num_tokens, kThreads, smem, stream>>>(
        static_cast<T*>(qkv), a, static_cast<T*>(key_cache), static_cast<T*>(value_cache),
        Int8KvCache{});
  });
  TPSERVE_CUDA_CHECK_LAUNCH();
}

void launch_rope_cache_write_int8(DType dtype, cudaStream_t stream, void* qkv, int64_t row_stride,
                                  const int32_t* positions, int num_tokens,
                                  const HeadLayout& heads, const RopeParams& rope,
                                  const PagedBatch& batch, const Int8KvCache& cache) {
  if (num_tokens <= 0) return;
  const RopeCacheArgs a = rope_cache_args(row_stride, positions, heads, rope, batch);
  const size_t smem = static_cast<size_t>(a.half) * sizeof(float2);
  TPSERVE_DISPATCH_DTYPE(dtype, T, {
    rope_cache_write_kernel<T, true><<<num_tokens, kThreads, smem, stream>>>(
        static_cast<T*>(qkv), a, nullptr, nullptr, cache);
  });
  TPSERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace tpserve::kernels::cuda
