// The CPU's quantized row kernels, one set per instruction set (scalar, AVX2+FMA, AVX-512), chosen
// once at run time by what the processor supports. Each dequantizes W[row] exactly as
// QuantizedHostMatrix::weight does (one fused multiply-add per weight), so every set gives the
// same weights bit for bit; only the order of a dot product's additions differs.
#pragma once

#include <cstdint>
#include <string_view>

#include "kernels/quantized.h"

namespace tpserve::kernels::cpu {

enum class Isa { kScalar, kAvx2, kAvx512 };

struct QuantizedKernels {
  Isa isa = Isa::kScalar;
  std::string_view name;
  // out[(r - row_begin) * cols + c] = W[r][c] for rows [row_begin, row_end).
  void (*dequantize_rows)(const QuantizedMatrix& w, int64_t row_begin, int64_t row_end,
                          float* out) = nullptr;
  // y[r - row_begin] = sum_c W[r][c] x[c] for rows [row_begin, row_end): the decode GEMV, reading
  // each packed row once and never materializing it.
  void (*dot_rows)(const QuantizedMatrix& w, const float* x, int64_t row_begin, int64_t row_end,
                   float* y) = nullptr;
};

// The decode GEMV's fast path for column-ordered groups whose size and the row length are
// multiples of 32 (GGUF's blocks, GPTQ / AWQ's usual 32 / 64 / 128): each group's scale and min are
// factored out of its dot product, so a weight costs one FMA against x. AVX2 + FMA; the AVX-512
// set calls the same code (a 16-wide version is not written: this machine has no AVX-512 to
// measure one on).
bool chunked_dot_applies(const QuantizedMatrix& w);
void chunked_dot_rows_avx2(const QuantizedMatrix& w, const float* x, int64_t row_begin,
                           int64_t row_end, float* y);

bool isa_supported(Isa isa);
// The kernels of `isa` (which must be supported), and the best the processor supports.
const QuantizedKernels& quantized_kernels(Isa isa);
const QuantizedKernels& best_quantized_kernels();

// The per-ISA sets (quantized_scalar.cc, quantized_avx2.cc, quantized_avx512.cc).
extern const QuantizedKernels kScalarQuantizedKernels;
extern const QuantizedKernels kAvx2QuantizedKernels;
extern const QuantizedKernels kAvx512QuantizedKernels;

}  // namespace tpserve::kernels::cpu
