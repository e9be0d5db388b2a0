// The float32 reference implementation of the op set: plain loops (GEMM through OpenBLAS), written
// for clarity. Every CUDA kernel is tested against these.
#pragma once

#include <cstdint>

#include "kernels/ops.h"
#include "kernels/quantized.h"

namespace tpserve::kernels::cpu {

void embedding(const int32_t* ids, int num_tokens, const float* table, int64_t row_begin,
               int64_t num_rows, int64_t hidden, float* out);
void rms_norm(const float* x, const float* weight, int rows, int64_t cols, float eps, float* out);
void linear(const float* x, const float* weight, const float* bias, int m, int64_t n, int64_t k,
            float* out);
// linear with W quantized: dequantized per row (decode GEMV) or per tile (prefill), never whole
// (quantized_linear.cc).
void quantized_linear(const float* x, const QuantizedMatrix& w, const float* bias, int m,
                      float* out);
void rope(float* x, int64_t row_stride, const int32_t* positions, int num_tokens, int num_heads,
          const RopeParams& params);
void cache_write(const float* key, const float* value, int64_t row_stride,
                 const PagedBatch& batch, const HeadLayout& heads, float* key_cache,
                 float* value_cache);
// rope(q) and rope(k) in place over fused [q | k | v] rows (the query's logn factor on q only);
// returns the rows' first key (the value follows it). Both cache writes start with it (rope.cc).
float* rope_queries_and_keys(float* qkv, int64_t row_stride, const int32_t* positions,
                             int num_tokens, const HeadLayout& heads, const RopeParams& rope);
// rope_queries_and_keys + cache_write over fused [q | k | v] rows, composed (rope.cc).
void rope_cache_write(float* qkv, int64_t row_stride, const int32_t* positions, int num_tokens,
                      const HeadLayout& heads, const RopeParams& rope, const PagedBatch& batch,
                      float* key_cache, float* value_cache);
void attention(const float* q, int64_t q_row_stride, const float* key_cache,
               const float* value_cache, const PagedBatch& batch, const HeadLayout& heads,
               float scale, float* out);
// The int8 KV cache (kv_int8.cc): x[0..n) -> codes and one symmetric scale (ops.h, Int8KvCache).
void quantize_int8(const float* x, int n, int8_t* codes, float* scale);
void cache_write_int8(const float* key, const float* value, int64_t row_stride,
                      const PagedBatch& batch, const HeadLayout& heads, const Int8KvCache& cache);
void rope_cache_write_int8(float* qkv, int64_t row_stride, const int32_t* positions,
                           int num_tokens, const HeadLayout& heads, const RopeParams& rope,
                           const PagedBatch& batch, const Int8KvCache& cache);
// q . k in the order both attentions use (8 partial sums, added pairwise, then the tail), so
// attention_int8 equals attention over the dequantized cache bit for bit.
float dot_product(const float* q, const float* k, int n);
void attention_int8(const float* q, int64_t q_row_stride, const Int8KvCache& cache,
                    const PagedBatch& batch, const HeadLayout& heads, float scale, float* out);
void copy_rows(const float* src, const int32_t* rows, int num_rows, int64_t cols, float* dst);
void scatter_add_rows(const float* src, const int32_t* rows, const float* row_weights,
                      int num_rows, int64_t cols, float* dst);  // moe.cc
void silu_mul(const float* gate_up, int rows, int64_t inter, float* out);
void add(float* x, const float* y, int64_t n);
// add then rms_norm, composed: bit-identical to the two ops (elementwise.cc).
void add_rms_norm(float* x, const float* y, const float* weight, int rows, int64_t cols, float eps,
                  float* out);
void argmax(const float* logits, int rows, int64_t cols, int32_t* out);

}  // namespace tpserve::kernels::cpu
