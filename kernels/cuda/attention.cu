// Paged causal attention, bf16/fp16 in, float32 math; the twin of kernels/cpu/attention.cc.
//
// One kernel serves decode, prefill and mixed batches: every token is a query whose causal limit is
// its own token_pos. Grid (token, local KV head x q-head chunk, KV split); one CTA of 128 threads
// serves up to kAttentionMaxHeads q heads that share a KV head, so each K/V row is read from
// global memory once per group (GQA), not once per q head.
//
// Per CTA, over its key range [split * split_keys, min(context, (split + 1) * split_keys)), tiles
// of 32 keys are staged in shared memory with 16-byte cp.async copies through the block table,
// double-buffered (tile i + 1 is in flight while tile i is used; rows padded by 16 bytes so a
// warp's row-wise reads hit distinct banks). Warp w scores heads w and w + 4 (lane = key, each K
// element converted once for both), then updates their running max / sum (online softmax, flash-
// attention style); every thread then owns output dims (tid, tid + 128) of each head and
// accumulates P V, reading the 8 heads' probabilities of a key as two float4.
//
// Math on CUDA cores in float32. Measured on an H100 (bf16, head_dim 128, 4k contexts), decode
// reads the KV cache at 0.34 (8 q heads per KV head) to 0.63 (4 per KV head) of device-to-device
// copy bandwidth; a tensor-core (mma) version of both products is the next step for large groups
// and for prefill, which here recomputes per query token (about 11 TFLOP/s on 2k-token prompts).
//
// When the planner splits the keys (decode: few tokens, long contexts; flash-decoding), each CTA
// writes unnormalized partials (acc, max, sum) to scratch and attention_reduce_kernel combines the
// splits: out = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s.
//
// The int8 KV cache (launch_attention_int8; kernels/cpu/kv_int8.cc is the twin) is the same kernel
// with C = int8_t: the same grid, plan, tiles and online softmax, each K/V block still read once
// per q-head group. Rows are staged with 8-byte cp.async copies (8 codes, as 8 bf16 / fp16 take
// 16 bytes), and each key's float32 K and V scales with 4-byte copies beside them. A key's score is
// scale_k * sum(q_d * code_d) (the scale factored out of the dot product), a value element is
// code * scale_v: equal to attention over the dequantized cache up to float32 rounding order.
#include <cuda_pipeline.h>

#include <cfloat>
#include <type_traits>

#include "kernels/cuda/attention_config.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_types.cuh"
#include "kernels/cuda/kv_int8.h"

namespace tpserve::kernels::cuda {

namespace {

constexpr int kThreads = kAttentionThreads;
constexpr int kTile = kAttentionKeyTile;
constexpr int kMaxHeads = kAttentionMaxHeads;
constexpr int kWarps = kThreads / 32;
constexpr int kDimsPerThread = kAttentionMaxHeadDim / kThreads;
constexpr int kHeadsPerWarp = kMaxHeads / kWarps;
static_assert(kTile == 32, "one lane per key of a tile");
static_assert(kMaxHeads == 8, "P V reads the 8 heads' probabilities as two float4");
static_assert(kMaxHeads % kWarps == 0);
static_assert(kAttentionMaxHeadDim % kThreads == 0);

struct AttentionArgs {
  const void* q;
  int64_t q_row_stride;
  const void* key_cache;    // [slots, num_kv_heads, head_dim] of the cache element type C
  const void* value_cache;
  const float* key_scale;   // int8 cache only: [slots, num_kv_heads]
  const float* value_scale;
  const int32_t* token_seq;
  const int32_t* token_pos;
  const int32_t* block_tables;
  int max_blocks_per_seq;
  int block_size;
  int num_q_heads;
  int num_kv_heads;
  int head_dim;
  int q_head_begin;
  int kv_head_begin;
  int group_size;
  int head_chunks;
  int num_splits;
  int split_keys;
  float scale;
  void* out;
  float* partial_acc;  // [num_tokens, num_q_heads, num_splits, head_dim]
  float2* partial_ml;  // [num_tokens, num_q_heads, num_splits] (running max, running sum)
};

// q (float), p (float, [key][head]), m/l/alpha, (int8: K and V scales double-buffered), then K
// and V tiles double-buffered.
template <typename C>
size_t attention_smem_bytes(int head_dim) {
  constexpr bool kInt8 = std::is_same_v<C, int8_t>;
  const size_t floats = static_cast<size_t>(kMaxHeads) * head_dim + kTile * kMaxHeads +
                        3 * kMaxHeads + (kInt8 ? 4 * kTile : 0);
  return floats * sizeof(float) + 4 * static_cast<size_t>(kTile) * (head_dim + 8) * sizeof(C);
}

__device__ __forceinline__ float cache_to_float(int8_t x) { return static_cast<float>(x); }
__device__ __forceinline__ float cache_to_float(__nv_bfloat16 x) { return to_float(x); }
__device__ __forceinline__ float cache_to_float(__half x) { return to_float(x); }

// The running-softmax update of head h for one tile, by the warp that scored it (lane = key).
__device__ __forceinline__ void online_softmax_update(int h, float score, bool valid, int lane,
                                                      float* m_s, float* l_s, float* alpha_s,
                                                      float* p_s) {
  const float m_old = m_s[h];
  const float m_new = fmaxf(m_old, warp_max(score));  // finite: lane 0 holds a valid key
  const float p = valid ? expf(score - m_new) : 0.0f;
  p_s[lane * kMaxHeads + h] = p;
  const float tile_sum = warp_sum(p);
  __syncwarp();  // every lane has read m_s[h] before lane 0 replaces it
  if (lane == 0) {
    const float alpha = expf(m_old - m_new);  // 0 on the first tile (m_old = -inf)
    alpha_s[h] = alpha;
    l_s[h] = l_s[h] * alpha + tile_sum;
    m_s[h] = m_new;
  }
}

// T: the compute dtype of q and out; C: the cache element type (T, or int8_t codes with scales).
template <typename T, typename C>
__global__ void __launch_bounds__(kThreads) paged_attention_kernel(AttentionArgs a) {
  constexpr bool kInt8 = std::is_same_v<C, int8_t>;
  constexpr int kVectorBytes = 8 * sizeof(C);  // one staged copy: 8 elements
  extern __shared__ __align__(16) unsigned char smem[];
  const int head_dim = a.head_dim;
  const int pitch = head_dim + 8;  // elements per staged K/V row: +8 against bank conflicts
  float* q_s = reinterpret_cast<float*>(smem);  // [kMaxHeads][head_dim], pre-scaled
  float* p_s = q_s + kMaxHeads * head_dim;      // [kTile][kMaxHeads] softmax numerators
  float* m_s = p_s + kTile * kMaxHeads;         // running max per head
  float* l_s = m_s + kMaxHeads;                 // running sum per head
  float* alpha_s = l_s + kMaxHeads;             // rescale of the accumulators this tile
  // int8 only (no room taken otherwise): 2 x [kTile] key scales, then 2 x [kTile] value scales.
  float* k_scale_s = alpha_s + kMaxHeads;
  float* v_scale_s = k_scale_s + 2 * kTile;
  C* k_s = reinterpret_cast<C*>(k_scale_s + (kInt8 ? 4 * kTile : 0));  // 2 x [kTile][pitch]
  C* v_s = k_s + 2 * kTile * pitch;                                    // 2 x [kTile][pitch]

  const int t = blockIdx.x;
  const int kv_local = blockIdx.y / a.head_chunks;
  const int chunk = blockIdx.y % a.head_chunks;
  const int split = blockIdx.z;
  // Local q heads h with (q_head_begin + h) / group_size == kv_head_begin + kv_local.
  const int kv_global = a.kv_head_begin + kv_local;
  const int h_lo = max(0, kv_global * a.group_size - a.q_head_begin);
  const int h_hi = min(a.num_q_heads, (kv_global + 1) * a.group_size - a.q_head_begin);
  const int h_begin = h_lo + chunk * kMaxHeads;
  const int num_heads = min(h_hi - h_begin, kMaxHeads);
  if (num_heads <= 0) return;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int seq = a.token_seq[t];
  const int context = a.token_pos[t] + 1;
  const int key_begin = split * a.split_keys;
  const int key_end = min(context, key_begin + a.split_keys);
  const int64_t partial_row =
      (static_cast<int64_t>(t) * a.num_q_heads + h_begin) * a.num_splits + split;
  if (key_begin >= key_end) {  // a split past this token's context: an empty partial
    if (tid < num_heads)
      a.partial_ml[partial_row + tid * a.num_splits] = make_float2(-INFINITY, 0.0f);
    return;
  }

  const int64_t slot_stride = static_cast<int64_t>(a.num_kv_heads) * head_dim;
  const C* key_cache =
      static_cast<const C*>(a.key_cache) + static_cast<int64_t>(kv_local) * head_dim;
  const C* value_cache =
      static_cast<const C*>(a.value_cache) + static_cast<int64_t>(kv_local) * head_dim;
  const int32_t* table = a.block_tables + static_cast<int64_t>(seq) * a.max_blocks_per_seq;
  const int vectors_per_row = head_dim / 8;
  // Asynchronous copies (cp.async) of 8 elements (16 bytes; int8: 8) of one tile's K and V rows
  // into buffer `buffer`, and with an int8 cache each key's two scales (4 bytes each).
  const auto stage_tile = [&](int tile, int buffer) {
    const int n = min(kTile, key_end - tile);
    C* k_dst = k_s + buffer * kTile * pitch;
    C* v_dst = v_s + buffer * kTile * pitch;
    for (int i = tid; i < n * vectors_per_row; i += kThreads) {
      const int j = i / vectors_per_row, c = (i % vectors_per_row) * 8;
      const int pos = tile + j;
      const int64_t slot =
          static_cast<int64_t>(table[pos / a.block_size]) * a.block_size + pos % a.block_size;
      const int64_t offset = slot * slot_stride + c;
      __pipeline_memcpy_async(k_dst + j * pitch + c, key_cache + offset, kVectorBytes);
      __pipeline_memcpy_async(v_dst + j * pitch + c, value_cache + offset, kVectorBytes);
    }
    if constexpr (kInt8) {
      if (tid < n) {
        const int pos = tile + tid;
        const int64_t slot =
            static_cast<int64_t>(table[pos / a.block_size]) * a.block_size + pos % a.block_size;
        const int64_t row = slot * a.num_kv_heads + kv_local;
        __pipeline_memcpy_async(k_scale_s + buffer * kTile + tid, a.key_scale + row, 4);
        __pipeline_memcpy_async(v_scale_s + buffer * kTile + tid, a.value_scale + row, 4);
      }
    }
    __pipeline_commit();
  };
  stage_tile(key_begin, 0);  // in flight while q is loaded

  const T* q =
      static_cast<const T*>(a.q) + t * a.q_row_stride + static_cast<int64_t>(h_begin) * head_dim;
  for (int i = tid; i < num_heads * head_dim; i += kThreads) q_s[i] = to_float(q[i]) * a.scale;
  // Heads past num_heads keep p = 0 and alpha = 0, so their accumulators stay 0 unbranched.
  for (int i = tid; i < kTile * kMaxHeads; i += kThreads) p_s[i] = 0.0f;
  if (tid < kMaxHeads) {
    m_s[tid] = -INFINITY;
    l_s[tid] = 0.0f;
    alpha_s[tid] = 0.0f;
  }
  float acc[kMaxHeads][kDimsPerThread];
#pragma unroll
  for (int h = 0; h < kMaxHeads; ++h) {
#pragma unroll
    for (int r = 0; r < kDimsPerThread; ++r) acc[h][r] = 0.0f;
  }

  int buffer = 0;
  for (int tile = key_begin; tile < key_end; tile += kTile, buffer ^= 1) {
    const int n = min(kTile, key_end - tile);
    if (tile + kTile < key_end) {
      stage_tile(tile + kTile, buffer ^ 1);  // prefetch the next tile while this one is used
      __pipeline_wait_prior(1);
    } else {
      __pipeline_wait_prior(0);
    }
    __syncthreads();  // this tile's copies (all threads') and q_s / p_s / m_s are visible

    // Scores: warp w serves heads w and w + 4 together (each K element converted once), lane = key.
    const C* keys = k_s + buffer * kTile * pitch;
    float dot[kHeadsPerWarp];
#pragma unroll
    for (int i = 0; i < kHeadsPerWarp; ++i) dot[i] = 0.0f;
    if (lane < n) {
      const C* key = keys + lane * pitch;
      for (int c = 0; c < head_dim; c += 8) {
        using Vector = std::conditional_t<kInt8, uint2, uint4>;  // 8 elements
        const Vector raw = *reinterpret_cast<const Vector*>(key + c);
        const C* e = reinterpret_cast<const C*>(&raw);
        float k[8];
#pragma unroll
        for (int u = 0; u < 8; ++u) k[u] = cache_to_float(e[u]);
#pragma unroll
        for (int i = 0; i < kHeadsPerWarp; ++i) {
          const int h = warp + i * kWarps;
          if (h < num_heads) {
            const float4 q0 = *reinterpret_cast<const float4*>(q_s + h * head_dim + c);
            const float4 q1 = *reinterpret_cast<const float4*>(q_s + h * head_dim + c + 4);
            dot[i] += q0.x * k[0] + q0.y * k[1] + q0.z * k[2] + q0.w * k[3] + q1.x * k[4] +
                      q1.y * k[5] + q1.z * k[6] + q1.w * k[7];
          }
        }
      }
      if constexpr (kInt8) {
        const float key_scale = k_scale_s[buffer * kTile + lane];
#pragma unroll
        for (int i = 0; i < kHeadsPerWarp; ++i) dot[i] *= key_scale;
      }
    }
#pragma unroll
    for (int i = 0; i < kHeadsPerWarp; ++i) {
      const int h = warp + i * kWarps;
      if (h < num_heads) {  // warp-uniform
        online_softmax_update(h, lane < n ? dot[i] : -INFINITY, lane < n, lane, m_s, l_s, alpha_s,
                              p_s);
      }
    }
    __syncthreads();

    // P V: thread owns dims tid and tid + 128 of every head.
    const C* values = v_s + buffer * kTile * pitch;
    const float* value_scales = v_scale_s + buffer * kTile;
#pragma unroll
    for (int r = 0; r < kDimsPerThread; ++r) {
      const int d = tid + r * kThreads;
      if (d < head_dim) {
#pragma unroll
        for (int h = 0; h < kMaxHeads; ++h) acc[h][r] *= alpha_s[h];
        for (int j = 0; j < n; ++j) {
          const float v = kInt8 ? cache_to_float(values[j * pitch + d]) * value_scales[j]
                                : cache_to_float(values[j * pitch + d]);
          const float4 p0 = *reinterpret_cast<const float4*>(p_s + j * kMaxHeads);
          const float4 p1 = *reinterpret_cast<const float4*>(p_s + j * kMaxHeads + 4);
          acc[0][r] += p0.x * v;
          acc[1][r] += p0.y * v;
          acc[2][r] += p0.z * v;
          acc[3][r] += p0.w * v;
          acc[4][r] += p1.x * v;
          acc[5][r] += p1.y * v;
          acc[6][r] += p1.z * v;
          acc[7][r] += p1.w * v;
        }
      }
    }
    __syncthreads();  // buffer, p_s and alpha_s are consumed before the next tile reuses them
  }
  // l_s / m_s were last written before the final tile's barriers: visible here.

  if (a.num_splits == 1) {
    T* out = static_cast<T*>(a.out) + static_cast<int64_t>(t) * a.num_q_heads * head_dim +
             static_cast<int64_t>(h_begin) * head_dim;
#pragma unroll
    for (int r = 0; r < kDimsPerThread; ++r) {
      const int d = tid + r * kThreads;
      if (d < head_dim) {
#pragma unroll
        for (int h = 0; h < kMaxHeads; ++h) {
          if (h < num_heads) out[h * head_dim + d] = from_float<T>(acc[h][r] / l_s[h]);
        }
      }
    }
  } else {
#pragma unroll
    for (int r = 0; r < kDimsPerThread; ++r) {
      const int d = tid + r * kThreads;
      if (d < head_dim) {
#pragma unroll
        for (int h = 0; h < kMaxHeads; ++h) {
          if (h < num_heads)
            a.partial_acc[(partial_row + h * a.num_splits) * head_dim + d] = acc[h][r];
        }
      }
    }
    if (tid < num_heads)
      a.partial_ml[partial_row + tid * a.num_splits] = make_float2(m_s[tid], l_s[tid]);
  }
}

// One CTA per (token, local q head): combines the splits' partials.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    attention_reduce_kernel(const float* partial_acc, const float2* partial_ml, int num_splits,
                            int num_q_heads, int head_dim, T* out) {
  __shared__ float weight_s[kAttentionMaxSplits];
  __shared__ float inv_total_s;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * num_q_heads + blockIdx.y;
  const int64_t first = row * num_splits;
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    float m = -INFINITY;
    for (int s = lane; s < num_splits; s += 32) m = fmaxf(m, partial_ml[first + s].x);
    m = warp_max(m);
    float total = 0.0f;
    for (int s = lane; s < num_splits; s += 32) {
      const float2 ml = partial_ml[first + s];
      // Empty splits (l == 0) carry no accumulators at all: their weight must be exactly 0.
      const float w = ml.y > 0.0f ? expf(ml.x - m) : 0.0f;
      weight_s[s] = w;
      total += w * ml.y;
    }
    total = warp_sum(total);
    if (lane == 0) inv_total_s = total > 0.0f ? 1.0f / total : 0.0f;
  }
  __syncthreads();
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float sum = 0.0f;
    for (int s = 0; s < num_splits; ++s) {
      const float w = weight_s[s];
      if (w != 0.0f) sum += w * partial_acc[(first + s) * head_dim + d];
    }
    out[row * head_dim + d] = from_float<T>(sum * inv_total_s);
  }
}

// Kernel arguments common to both cache types (the caches themselves are set by the caller).
AttentionArgs attention_args(const AttentionPlan& plan, const void* q, int64_t q_row_stride,
                             const PagedBatch& batch, const HeadLayout& heads, float scale,
                             void* out, void* scratch) {
  AttentionArgs a{};
  a.q = q;
  a.q_row_stride = q_row_stride;
  a.token_seq = batch.token_seq;
  a.token_pos = batch.token_pos;
  a.block_tables = batch.block_tables;
  a.max_blocks_per_seq = batch.max_blocks_per_seq;
  a.block_size = batch.block_size;
  a.num_q_heads = heads.num_q_heads;
  a.num_kv_heads = heads.num_kv_heads;
  a.head_dim = heads.head_dim;
  a.q_head_begin = heads.q_head_begin;
  a.kv_head_begin = heads.kv_head_begin;
  a.group_size = heads.group_size;
  a.head_chunks = plan.head_chunks;
  a.num_splits = plan.num_splits;
  a.split_keys = plan.split_keys;
  a.scale = scale;
  a.out = out;
  const int64_t partial_rows =
      static_cast<int64_t>(batch.num_tokens) * heads.num_q_heads * plan.num_splits;
  a.partial_acc = static_cast<float*>(scratch);
  a.partial_ml = plan.num_splits > 1
                     ? reinterpret_cast<float2*>(a.partial_acc + partial_rows * heads.head_dim)
                     : nullptr;
  return a;
}

// The attention kernel for cache element type C (T or int8_t), then the split reduction.
template <typename T, typename C>
void run_attention(cudaStream_t stream, const AttentionPlan& plan, const AttentionArgs& a,
                   const PagedBatch& batch, const HeadLayout& heads) {
  const dim3 grid(batch.num_tokens, heads.num_kv_heads * plan.head_chunks, plan.num_splits);
  const size_t smem = attention_smem_bytes<C>(heads.head_dim);
  if (smem > 48 * 1024) {  // head_dim > ~150: opt in to more than the default 48 KiB
    TPSERVE_CUDA_CHECK(cudaFuncSetAttribute(paged_attention_kernel<T, C>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem)));
  }
  paged_attention_kernel<T, C><<<grid, kThreads, smem, stream>>>(a);
  TPSERVE_CUDA_CHECK_LAUNCH();
  if (plan.num_splits > 1) {
    const dim3 reduce_grid(batch.num_tokens, heads.num_q_heads);
    attention_reduce_kernel<T><<<reduce_grid, kThreads, 0, stream>>>(
        a.partial_acc, a.partial_ml, plan.num_splits, heads.num_q_heads, heads.head_dim,
        static_cast<T*>(a.out));
    TPSERVE_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

void launch_attention(DType dtype, cudaStream_t stream, const AttentionPlan& plan, const void* q,
                      int64_t q_row_stride, const void* key_cache, const void* value_cache,
                      const PagedBatch& batch, const HeadLayout& heads, float scale, void* out,
                      void* scratch) {
  if (batch.num_tokens <= 0) return;
  AttentionArgs a = attention_args(plan, q, q_row_stride, batch, heads, scale, out, scratch);
  a.key_cache = key_cache;
  a.value_cache = value_cache;
  TPSERVE_DISPATCH_DTYPE(dtype, T, { run_attention<T, T>(stream, plan, a, batch, heads); });
}

void launch_attention_int8(DType dtype, cudaStream_t stream, const AttentionPlan& plan,
                           const void* q, int64_t q_row_stride, const Int8KvCache& cache,
                           const PagedBatch& batch, const HeadLayout& heads, float scale,
                           void* out, void* scratch) {
  if (batch.num_tokens <= 0) return;
  AttentionArgs a = attention_args(plan, q, q_row_stride, batch, heads, scale, out, scratch);
  a.key_cache = cache.key;
  a.value_cache = cache.value;
  a.key_scale = cache.key_scale;
  a.value_scale = cache.value_scale;
  TPSERVE_DISPATCH_DTYPE(dtype, T, { run_attention<T, int8_t>(stream, plan, a, batch, heads); });
}

}  // namespace tpserve::kernels::cuda
