// The Backend ops with a default: a device that has no kernel for an op refuses it by name.
#include "common/error.h"
#include "kernels/ops.h"

namespace tpserve::kernels {

void Backend::quantized_linear(const void*, const QuantizedMatrix&, const void*, int, void*) {
  raise(ErrorCode::kUnimplemented, "quantized linear on {}: not implemented yet", name());
}

}  // namespace tpserve::kernels
