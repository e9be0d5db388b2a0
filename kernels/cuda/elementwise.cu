// Row-wise and element-wise ops in bf16/fp16 with float32 math; twins of kernels/cpu/elementwise.cc
// and kernels/cpu/rope.cc. All are memory-bound: one CTA per row for the row ops (embedding,
// copy_rows, argmax), a grid-stride loop for the element ops. Row copies move 16 bytes per thread
// when the row width and pointers allow it. RMSNorm lives in norm.cu, the fused RoPE + cache
// write in rope_cache_write.cu.
#include <cfloat>
#include <climits>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_types.cuh"

namespace tpserve::kernels::cuda {

namespace {

constexpr int kThreads = 256;

// dst[0..cols) = src[0..cols) for one row, or zeros when src is null. kVec: 8 elements per uint4.
template <typename T, bool kVec>
__device__ __forceinline__ void copy_row(const T* src, int64_t cols, T* dst) {
  if constexpr (kVec) {
    const int64_t vectors = cols / 8;
    const uint4* s = reinterpret_cast<const uint4*>(src);
    uint4* d = reinterpret_cast<uint4*>(dst);
    for (int64_t i = threadIdx.x; i < vectors; i += blockDim.x) {
      d[i] = src != nullptr ? s[i] : make_uint4(0, 0, 0, 0);
    }
  } else {
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      dst[i] = src != nullptr ? src[i] : from_float<T>(0.0f);
    }
  }
}

template <typename T, bool kVec>
__global__ void embedding_kernel(const int32_t* ids, const T* table, int64_t row_begin,
                                 int64_t num_rows, int64_t hidden, T* out) {
  const int t = blockIdx.x;
  const int64_t row = static_cast<int64_t>(ids[t]) - row_begin;
  const T* src = row >= 0 && row < num_rows ? table + row * hidden : nullptr;
  copy_row<T, kVec>(src, hidden, out + static_cast<int64_t>(t) * hidden);
}

template <typename T, bool kVec>
__global__ void copy_rows_kernel(const T* src, const int32_t* rows, int64_t cols, T* dst) {
  const int i = blockIdx.x;
  copy_row<T, kVec>(src + static_cast<int64_t>(rows[i]) * cols, cols,
                    dst + static_cast<int64_t>(i) * cols);
}

template <typename T>
__global__ void silu_mul_kernel(const T* gate_up, int64_t total, int64_t inter, T* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / inter, c = i % inter;
    const float g = to_float(gate_up[r * 2 * inter + c]);
    const float u = to_float(gate_up[r * 2 * inter + inter + c]);
    out[i] = from_float<T>(g / (1.0f + expf(-g)) * u);
  }
}

template <typename T>
__global__ void add_kernel(T* x, const T* y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    x[i] = from_float<T>(to_float(x[i]) + to_float(y[i]));
  }
}

// (value, index) pairs: the larger value wins, the lower index on ties.
__device__ __forceinline__ void argmax_merge(float& best, int64_t& index, float other_value,
                                             int64_t other_index) {
  if (other_value > best || (other_value == best && other_index < index)) {
    best = other_value;
    index = other_index;
  }
}

template <typename T>
__global__ void argmax_kernel(const T* logits, int64_t cols, int32_t* out) {
  __shared__ float shared_value[kThreads / 32];
  __shared__ int64_t shared_index[kThreads / 32];
  const T* row = logits + static_cast<int64_t>(blockIdx.x) * cols;
  float best = -INFINITY;
  int64_t index = LLONG_MAX;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
    argmax_merge(best, index, to_float(row[c]), c);
  for (int offset = 16; offset > 0; offset /= 2) {
    const float v = __shfl_xor_sync(0xffffffffu, best, offset);
    const int64_t i = __shfl_xor_sync(0xffffffffu, index, offset);
    argmax_merge(best, index, v, i);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    shared_value[warp] = best;
    shared_index[warp] = index;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < static_cast<int>(blockDim.x / 32); ++w) {
      argmax_merge(best, index, shared_value[w], shared_index[w]);
    }
    // A row of NaNs only: the CPU twin answers 0.
    out[blockIdx.x] = index == LLONG_MAX ? 0 : static_cast<int32_t>(index);
  }
}

template <typename T>
__global__ void f32_to_dtype_kernel(const float* src, int64_t n, T* dst) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[i] = from_float<T>(src[i]);
  }
}

template <typename T>
__global__ void dtype_to_f32_kernel(const T* src, int64_t n, float* dst) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[i] = to_float(src[i]);
  }
}

// Rotary embedding, one thread per (token, head, pair); see kernels/cpu/rope.cc for the two
// pairings. The angle position * inv_freq is float32 as in transformers; sincosf is the accurate
// libdevice version (no fast math), since angles reach ~1e5 radians at long contexts. With
// frequency_scale (dynamic NTK) pair i's frequency is inv_freq * g^(-2i / (rotary_dim - 2)); with
// query_scale every dim of the head is multiplied after the rotation, the dims past rotary_dim by
// the thread of pair (d - rotary_dim) % half, so each element still has exactly one writer.
__device__ __forceinline__ float scaled_frequency(const float* inv_freq, const float* frequency_scale,
                                                  int64_t t, int pair, int rotary_dim) {
  const float growth = frequency_scale != nullptr ? frequency_scale[t] : 1.0f;
  if (growth == 1.0f) return inv_freq[pair];
  return inv_freq[pair] *
         powf(growth, -static_cast<float>(2 * pair) / static_cast<float>(rotary_dim - 2));
}

template <typename T>
__global__ void rope_kernel(T* x, int64_t row_stride, const int32_t* positions, int num_tokens,
                            int num_heads, int head_dim, int half, bool interleaved,
                            const float* inv_freq, float attention_scaling,
                            const float* frequency_scale, const float* query_scale) {
  const int64_t total = static_cast<int64_t>(num_tokens) * num_heads * half;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int pair = static_cast<int>(i % half);
    const int64_t token_head = i / half;
    const int head = static_cast<int>(token_head % num_heads);
    const int64_t t = token_head / num_heads;
    T* h = x + t * row_stride + static_cast<int64_t>(head) * head_dim;
    const float angle = static_cast<float>(positions[t]) *
                        scaled_frequency(inv_freq, frequency_scale, t, pair, 2 * half);
    float sin, cos;
    sincosf(angle, &sin, &cos);
    cos *= attention_scaling;
    sin *= attention_scaling;
    const float q_scale = query_scale != nullptr ? query_scale[t] : 1.0f;
    const int a = interleaved ? 2 * pair : pair;
    const int b = interleaved ? 2 * pair + 1 : pair + half;
    const float xa = to_float(h[a]), xb = to_float(h[b]);
    h[a] = from_float<T>((xa * cos - xb * sin) * q_scale);
    h[b] = from_float<T>((xb * cos + xa * sin) * q_scale);
    if (query_scale != nullptr) {
      for (int d = 2 * half + pair; d < head_dim; d += half) {
        h[d] = from_float<T>(to_float(h[d]) * q_scale);
      }
    }
  }
}

// Each token's K and V rows (num_kv_heads * head_dim) into the slot of its position.
template <typename T, bool kVec>
__global__ void cache_write_kernel(const T* key, const T* value, int64_t row_stride,
                                   const int32_t* token_seq, const int32_t* token_pos,
                                   const int32_t* block_tables, int max_blocks_per_seq,
                                   int block_size, int64_t width, T* key_cache, T* value_cache) {
  const int t = blockIdx.x;
  const int pos = token_pos[t];
  const int32_t block =
      block_tables[static_cast<int64_t>(token_seq[t]) * max_blocks_per_seq + pos / block_size];
  const int64_t slot = static_cast<int64_t>(block) * block_size + pos % block_size;
  copy_row<T, kVec>(key + t * row_stride, width, key_cache + slot * width);
  copy_row<T, kVec>(value + t * row_stride, width, value_cache + slot * width);
}

}  // namespace

void launch_embedding(DType dtype, cudaStream_t stream, const int32_t* ids, int num_tokens,
                      const void* table, int64_t row_begin, int64_t num_rows, int64_t hidden,
                      void* out) {
  if (num_tokens <= 0 || hidden <= 0) return;
  const bool vec = hidden % 8 == 0 && aligned16(table) && aligned16(out);
  TPSERVE_DISPATCH_DTYPE(dtype, T, {
    const T* t = static_cast<const T*>(table);
    T* o = static_cast<T*>(out);
    if (vec) {
      embedding_kernel<T, true>
          <<<num_tokens, kThreads, 0, stream>>>(ids, t, row_begin, num_rows, hidden, o);
    } else {
      embedding_kernel<T, false>
          <<<num_tokens, kThreads, 0, stream>>>(ids, t, row_begin, num_rows, hidden, o);
    }
  });
  TPSERVE_CUDA_CHECK_LAUNCH();
}

void launch_rope(DType dtype, cudaStream_t stream, void* x, int64_t row_stride,
                 const int32_t* positions, int num_tokens, int num_heads,
                 const RopeParams& params) {
  const int half = params.rotary_dim / 2;
  const int64_t total = static_cast<int64_t>(num_tokens) * num_heads * half;
  if (total <= 0) return;
  TPSERVE_DISPATCH_DTYPE(dtype, T, {
    rope_kernel<T><<<blocks_for(total, kThreads), kThreads, 0, stream>>>(
        static_cast<T*>(x), row_stride, positions, num_tokens, num_heads, params.head_dim, half,
        params.interleaved, params.inv_freq, params.attention_scaling, params.frequency_scale,
        params.query_scale);
  });
  TPSERVE_CUDA_CHECK_LAUNCH();
}

void launch_cache_write(DType dtype, cudaStream_t stream, const void* key, const void* value,
                        int64_t row_stride, const PagedBatch& batch, const HeadLayout& heads,
                        void* key_cache, void* value_cache) {
  if (batch.num_tokens <= 0) return;
  const int64_t width = static_cast<int64_t>(heads.num_kv_heads) * heads.head_dim;
  const bool vec = width % 8 == 0 && row_stride % 8 == 0 && aligned16(key) && aligned16(value) &&
                   aligned16(key_cache) && aligned16(value_cache);
  TPSERVE_DISPATCH_DTYPE(dtype, T, {
    const T* k = static_cast<const T*>(key);
    const T* v = static_cast<const T*>(value);
    T* kc = static_cast<T*>(key_cache);
    T* vc = static_cast<T*>(value_cache);
    if (vec) {
      cache_write_kernel<T, true><<<batch.num_tokens, 128, 0, stream>>>(
          k, v, row_stride, batch.token_seq, batch.token_pos, batch.block_tables,
          batch.max_blocks_per_seq, batch.block_size, width, kc, vc);
    } else {
      cache_write_kernel<T, false><<<batch.num_tokens, 128, 0, stream>>>(
          k, v, row_stride, batch.token_seq, batch.token_pos, batch.block_tables,
          batch.max_blocks_per_seq, batch.block_size, width, kc, vc);
    }
  });
  TPSERVE_CUDA_CHECK_LAUNCH();
}

void launch_silu_mul(DType dtype, cudaStream_t stream, const void* gate_up, int rows, int64_t inter,
                     void* out) {
  const int64_t total = static_cast<int64_t>(rows) * inter;
  if (total <= 0) return;
  TPSERVE_DISPATCH_DTYPE(dtype, T, {
    silu_mul_kernel<T><<<blocks_for(total, kThreads), kThreads, 0, stream>>>(
        static_cast<const T*>(gate_up), total, inter, static_cast<T*>(out));
  });
  TPSERVE_CUDA_CHECK_LAUNCH();
}

void launch_copy_rows(DType dtype, cudaStream_t stream, const void* src, const int32_t* rows,
                      int num_rows, int64_t cols, void* dst) {
  if (num_rows <= 0 || cols <= 0) return;
  const bool vec = cols % 8 == 0 && aligned16(src) && aligned16(dst);
  TPSERVE_DISPATCH_DTYPE(dtype, T, {
    const T* s = static_cast<const T*>(src);
    T* d = static_cast<T*>(dst);
    if (vec) {
      copy_rows_kernel<T, true><<<num_rows, kThreads, 0, stream>>>(s, rows, cols, d);
    } else {
      copy_rows_kernel<T, false><<<num_rows, kThreads, 0, stream>>>(s, rows, cols, d);
    }
  });
  TPSERVE_CUDA_CHECK_LAUNCH();
}

void launch_add(DType dtype, cudaStream_t stream, void* x, const void* y, int64_t n) {
  if (n <= 0) return;
  TPSERVE_DISPATCH_DTYPE(dtype, T, {
    add_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, stream>>>(static_cast<T*>(x),
                                                                    static_cast<const T*>(y), n);
  });
  TPSERVE_CUDA_CHECK_LAUNCH();
}

void launch_argmax(DType dtype, cudaStream_t stream, const void* logits, int rows, int64_t cols,
                   int32_t* out) {
  if (rows <= 0) return;
  TPSERVE_DISPATCH_DTYPE(dtype, T, {
    argmax_kernel<T><<<rows, kThreads, 0, stream>>>(static_cast<const T*>(logits), cols, out);
  });
  TPSERVE_CUDA_CHECK_LAUNCH();
}

void launch_f32_to_dtype(DType dtype, cudaStream_t stream, const float* src, int64_t n, void* dst) {
  if (n <= 0) return;
  TPSERVE_DISPATCH_DTYPE(dtype, T, {
    f32_to_dtype_kernel<T>
        <<<blocks_for(n, kThreads), kThreads, 0, stream>>>(src, n, static_cast<T*>(dst));
  });
  TPSERVE_CUDA_CHECK_LAUNCH();
}

void launch_dtype_to_f32(DType dtype, cudaStream_t stream, const void* src, int64_t n, float* dst) {
  if (n <= 0) return;
  TPSERVE_DISPATCH_DTYPE(dtype, T, {
    dtype_to_f32_kernel<T>
        <<<blocks_for(n, kThreads), kThreads, 0, stream>>>(static_cast<const T*>(src), n, dst);
  });
  TPSERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace tpserve::kernels::cuda
