// A linear layer's weight on the backend as the forward pass sees it: float ([out, in] in the
// compute dtype) or quantized (kernels/quantized.h). The forward calls run_linear and never asks
// which.
#pragma once

#include <cstdint>

#include "kernels/ops.h"
#include "kernels/quantized.h"

namespace tpserve::runtime {

struct LinearWeight {
  const void* dense = nullptr;
  const kernels::QuantizedMatrix* quantized = nullptr;  // owned by the WeightStore
  bool present() const { return dense != nullptr || quantized != nullptr; }
};

// out[m, n] = x[m, k] W^T (+ bias) on the weight's path.
inline void run_linear(kernels::Backend& backend, const void* x, const LinearWeight& w,
                       const void* bias, int m, int64_t n, int64_t k, void* out) {
  if (w.quantized != nullptr) {
    backend.quantized_linear(x, *w.quantized, bias, m, out);
  } else {
    backend.linear(x, w.dense, bias, m, n, k, out);
  }
}

}  // namespace tpserve::runtime
