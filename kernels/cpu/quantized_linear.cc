// y = x W^T + b with W quantized (kernels/quantized.h), never dequantized whole:
//   m < kGemmRows (decode): the fused GEMV reads each packed row once per token row, the rows
//   split over the backend's threads;
//   otherwise (prefill): tiles of rows are dequantized into a float32 buffer of ~1 MiB and
//   multiplied by OpenBLAS, so the float copy never exceeds one tile.
#include <cblas.h>

#include <algorithm>
#include <vector>

#include "common/error.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/quantized_kernels.h"
#include "kernels/cpu/row_pool.h"

namespace tpserve::kernels::cpu {

namespace {

constexpr int kGemmRows = 4;  // token rows from which a dequantized tile pays for itself
constexpr int64_t kTileFloats = int64_t{1} << 18;
constexpr int64_t kRowAlign = 16;  // rows per unit of the GEMV's split: whole cache lines of y

}  // namespace

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return true;
    case Isa::kAvx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::kAvx512: return __builtin_cpu_supports("avx512f") && isa_supported(Isa::kAvx2);
  }
  return false;
}

const QuantizedKernels& quantized_kernels(Isa isa) {
  if (!isa_supported(isa)) {
    raise(ErrorCode::kUnimplemented, "quantized kernels: this processor lacks the instruction set");
  }
  switch (isa) {
    case Isa::kAvx512: return kAvx512QuantizedKernels;
    case Isa::kAvx2: return kAvx2QuantizedKernels;
    case Isa::kScalar: break;
  }
  return kScalarQuantizedKernels;
}

const QuantizedKernels& best_quantized_kernels() {
  static const QuantizedKernels& best = quantized_kernels(
      isa_supported(Isa::kAvx512) ? Isa::kAvx512
                                  : (isa_supported(Isa::kAvx2) ? Isa::kAvx2 : Isa::kScalar));
  return best;
}

void quantized_linear(const float* x, const QuantizedMatrix& w, const float* bias, int m,
                      float* out) {
  const QuantizedKernels& kernels = best_quantized_kernels();
  const int64_t n = w.rows;
  const int64_t k = w.cols;
  if (m < kGemmRows) {
    // Output rows split over the backend's threads (row_pool.h), each reading its rows once.
    parallel_rows(n, kRowAlign, [&](int64_t begin, int64_t end) {
      for (int t = 0; t < m; ++t) {
        kernels.dot_rows(w, x + t * k, begin, end, out + t * n + begin);
      }
    });
  } else {
    // One buffer per thread, grown once: no allocation per step once the largest tile was seen.
    thread_local std::vector<float> tile;
    const int64_t tile_rows = std::clamp<int64_t>(kTileFloats / k, 1, n);
    tile.resize(static_cast<size_t>(tile_rows * k));
    for (int64_t r = 0; r < n; r += tile_rows) {
      const int64_t rows = std::min(tile_rows, n - r);
      kernels.dequantize_rows(w, r, r + rows, tile.data());
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, static_cast<blasint>(rows),
                  static_cast<blasint>(k), 1.0f, x, static_cast<blasint>(k), tile.data(),
                  static_cast<blasint>(k), 0.0f, out + r, static_cast<blasint>(n));
    }
  }
  if (bias == nullptr) return;
  for (int t = 0; t < m; ++t) {
    for (int64_t c = 0; c < n; ++c) out[t * n + c] += bias[c];
  }
}

}  // namespace tpserve::kernels::cpu
