// Mixture-of-experts row ops (the combine after each expert's GEMMs).
#include "kernels/cpu/cpu_ops.h"

namespace tpserve::kernels::cpu {

void scatter_add_rows(const float* src, const int32_t* rows, const float* row_weights,
                      int num_rows, int64_t cols, float* dst) {
  for (int i = 0; i < num_rows; ++i) {
    const float weight = row_weights[i];
    const float* from = src + static_cast<int64_t>(i) * cols;
    float* to = dst + static_cast<int64_t>(rows[i]) * cols;
    for (int64_t c = 0; c < cols; ++c) to[c] += weight * from[c];
  }
}

}  // namespace tpserve::kernels::cpu
