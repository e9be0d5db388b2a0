// Launchers of the CUDA kernels, one per op, callable from plain C++ (cuda_backend.cc). Each takes
// the compute dtype (kBF16 or kF16) and the backend's stream, and checks its launch.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/ops.h"

namespace tpserve::kernels::cuda {

void launch_embedding(DType dtype, cudaStream_t stream, const int32_t* ids, int num_tokens,
                      const void* table, int64_t row_begin, int64_t num_rows, int64_t hidden,
                      void* out);
void launch_rms_norm(DType dtype, cudaStream_t stream, const void* x, const void* weight, int rows,
                     int64_t cols, float eps, void* out);  // norm.cu
// x += y, then out = rms_norm(x) (norm.cu, as launch_rms_norm).
void launch_add_rms_norm(DType dtype, cudaStream_t stream, void* x, const void* y,
                         const void* weight, int rows, int64_t cols, float eps, void* out);
void launch_rope(DType dtype, cudaStream_t stream, void* x, int64_t row_stride,
                 const int32_t* positions, int num_tokens, int num_heads, const RopeParams& params);
void launch_cache_write(DType dtype, cudaStream_t stream, const void* key, const void* value,
                        int64_t row_stride, const PagedBatch& batch, const HeadLayout& heads,
                        void* key_cache, void* value_cache);
// rope(q) + rope(k) + cache_write over fused [q | k | v] rows (rope_cache_write.cu); expects
// num_tokens == batch.num_tokens and rope.head_dim == heads.head_dim (the backend checks).
void launch_rope_cache_write(DType dtype, cudaStream_t stream, void* qkv, int64_t row_stride,
                             const int32_t* positions, int num_tokens, const HeadLayout& heads,
                             const RopeParams& rope, const PagedBatch& batch, void* key_cache,
                             void* value_cache);
void launch_silu_mul(DType dtype, cudaStream_t stream, const void* gate_up, int rows, int64_t inter,
                     void* out);
void launch_copy_rows(DType dtype, cudaStream_t stream, const void* src, const int32_t* rows,
                      int num_rows, int64_t cols, void* dst);
void launch_scatter_add_rows(DType dtype, cudaStream_t stream, const void* src, const int32_t* rows,
                             const float* row_weights, int num_rows, int64_t cols,
                             void* dst);  // moe.cu
void launch_add(DType dtype, cudaStream_t stream, void* x, const void* y, int64_t n);
void launch_argmax(DType dtype, cudaStream_t stream, const void* logits, int rows, int64_t cols,
                   int32_t* out);
void launch_f32_to_dtype(DType dtype, cudaStream_t stream, const float* src, int64_t n, void* dst);
void launch_dtype_to_f32(DType dtype, cudaStream_t stream, const void* src, int64_t n, float* dst);
// n weights of src_dtype (F32, F16 or BF16) on the device -> dst_dtype (the compute dtype, F16 or
// BF16): dst[i] = the compute dtype rounded from the exact float32 value of src[i], the same
// rounding launch_f32_to_dtype applies (convert.cu). src == dst is allowed when both dtypes have
// the same size (each element is read and written by one thread).
void launch_convert_weights(DType src_dtype, DType dst_dtype, cudaStream_t stream, const void* src,
                            int64_t n, void* dst);

// How one attention call is cut into CTAs: grid (token, kv head x q-head chunk, kv split).
struct AttentionPlan {
  int head_chunks = 1;       // CTAs per KV head, each serving up to kAttentionMaxHeads q heads
  int num_splits = 1;        // KV ranges per (token, head chunk); 1 = write out directly
  int split_keys = 0;        // keys per split (a multiple of the key tile)
  size_t scratch_bytes = 0;  // partial results when num_splits > 1
};

// Validates the shapes (raises tpserve::Error on an unsupported head_dim) and plans the grid;
// num_sms sizes the split so that a small decode batch still fills the GPU.
AttentionPlan plan_attention(const PagedBatch& batch, const HeadLayout& heads, int num_sms);

// The kernel stages K/V rows with 16-byte loads: both caches must be 16-byte aligned (raises).
void check_attention_caches(const void* key_cache, const void* value_cache);

void launch_attention(DType dtype, cudaStream_t stream, const AttentionPlan& plan, const void* q,
                      int64_t q_row_stride, const void* key_cache, const void* value_cache,
                      const PagedBatch& batch, const HeadLayout& heads, float scale, void* out,
                      void* scratch);

}  // namespace tpserve::kernels::cuda
