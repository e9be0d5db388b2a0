// The Backend ops with a default: a device that has no kernel for an op refuses it by name.
#include "common/error.h"
#include "kernels/ops.h"

namespace tpserve::kernels {

void Backend::quantized_linear(const void*, const QuantizedMatrix&, const void*, int, void*) {
  raise(ErrorCode::kUnimplemented, "quantized linear on {}: not implemented yet", name());
}

void Backend::cache_write_int8(const void*, const void*, int64_t, const PagedBatch&,
                               const HeadLayout&, const Int8KvCache&) {
  raise(ErrorCode::kUnimplemented, "int8 KV cache on {}: not implemented yet", name());
}

void Backend::rope_cache_write_int8(void*, int64_t, const int32_t*, int, const HeadLayout&,
                                    const RopeParams&, const PagedBatch&, const Int8KvCache&) {
  raise(ErrorCode::kUnimplemented, "int8 KV cache on {}: not implemented yet", name());
}

void Backend::attention_int8(const void*, int64_t, const Int8KvCache&, const PagedBatch&,
                             const HeadLayout&, float, void*) {
  raise(ErrorCode::kUnimplemented, "int8 KV cache on {}: not implemented yet", name());
}

}  // namespace tpserve::kernels
