// y = x W^T + b through OpenBLAS: W keeps the checkpoint's [out, in] layout, so the GEMM reads it
// transposed instead of copying it.
#include <cblas.h>

#include "kernels/cpu/cpu_ops.h"

namespace tpserve::kernels::cpu {

void linear(const float* x, const float* weight, const float* bias, int m, int64_t n, int64_t k,
            float* out) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, static_cast<blasint>(n),
              static_cast<blasint>(k), 1.0f, x, static_cast<blasint>(k), weight,
              static_cast<blasint>(k), 0.0f, out, static_cast<blasint>(n));
  if (bias == nullptr) return;
  for (int r = 0; r < m; ++r) {
    float* row = out + r * n;
    for (int64_t c = 0; c < n; ++c) row[c] += bias[c];
  }
}

}  // namespace tpserve::kernels::cpu
