// The float32 reference implementation of the op set: plain loops (GEMM through OpenBLAS), written
// for clarity. Every CUDA kernel is tested against these.
#pragma once

#include <cstdint>

#include "kernels/ops.h"

namespace tpserve::kernels::cpu {

void embedding(const int32_t* ids, int num_tokens, const float* table, int64_t row_begin,
               int64_t num_rows, int64_t hidden, float* out);
void rms_norm(const float* x, const float* weight, int rows, int64_t cols, float eps, float* out);
void linear(const float* x, const float* weight, const float* bias, int m, int64_t n, int64_t k,
            float* out);
void rope(float* x, int64_t row_stride, const int32_t* positions, int num_tokens, int num_heads,
          const RopeParams& params);
void cache_write(const float* key, const float* value, int64_t row_stride,
                 const PagedBatch& batch, const HeadLayout& heads, float* key_cache,
                 float* value_cache);
void attention(const float* q, int64_t q_row_stride, const float* key_cache,
               const float* value_cache, const PagedBatch& batch, const HeadLayout& heads,
               float scale, float* out);
void copy_rows(const float* src, const int32_t* rows, int num_rows, int64_t cols, float* dst);
void silu_mul(const float* gate_up, int rows, int64_t inter, float* out);
void add(float* x, const float* y, int64_t n);
void argmax(const float* logits, int rows, int64_t cols, int32_t* out);

}  // namespace tpserve::kernels::cpu
