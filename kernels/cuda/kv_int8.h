// Launchers of the int8 KV cache kernels (kernels/ops.h, Int8KvCache), the CUDA twins of
// kernels/cpu/kv_int8.cc, callable from plain C++ (cuda_backend.cc). Each takes the compute dtype
// (kBF16 or kF16) and the backend's stream, and checks its launch.
//
// Storage is the CPU's, byte for byte: per position and KV head, scale = max|x| / 127 (float32)
// and code = rint(x / scale) clamped to [-127, 127], x being the key (after RoPE) or value in the
// compute dtype. Given the same compute-dtype inputs the codes and scales equal the CPU's exactly
// (the same IEEE float32 operations: |x|, max, one correctly rounded division per element, round
// to nearest even). They can differ from the CPU run on float32 activations only because the CUDA
// path rounds the rotated key to bf16 / fp16 before quantizing (the float cache stores that same
// rounded key): where x / scale lies within that rounding of a .5 boundary the code moves by one.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/ops.h"

namespace tpserve::kernels::cuda {

// cache_write with quantization (kv_int8.cu): one warp per (token, KV head, K or V).
void launch_cache_write_int8(DType dtype, cudaStream_t stream, const void* key, const void* value,
                             int64_t row_stride, const PagedBatch& batch, const HeadLayout& heads,
                             const Int8KvCache& cache);

// rope(q) + rope(k) + cache_write_int8 over fused [q | k | v] rows (rope_cache_write.cu, the float
// kernel's rotation, then the rotated k and v quantized from the row); the backend checks the
// shapes as for launch_rope_cache_write.
void launch_rope_cache_write_int8(DType dtype, cudaStream_t stream, void* qkv, int64_t row_stride,
                                  const int32_t* positions, int num_tokens,
                                  const HeadLayout& heads, const RopeParams& rope,
                                  const PagedBatch& batch, const Int8KvCache& cache);

// Paged attention over the int8 cache (attention.cu: the float kernel instantiated for int8 codes,
// with the same plan_attention grid and scratch); the cache pointers must pass
// check_attention_caches.
void launch_attention_int8(DType dtype, cudaStream_t stream, const AttentionPlan& plan,
                           const void* q, int64_t q_row_stride, const Int8KvCache& cache,
                           const PagedBatch& batch, const HeadLayout& heads, float scale,
                           void* out, void* scratch);

}  // namespace tpserve::kernels::cuda
