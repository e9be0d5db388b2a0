#include "parallel/half_convert.h"

#include <cstdint>
#include <cstring>

#include "common/check.h"

namespace tpserve::parallel {

void widen_to_f32(DType dtype, const void* src, float* dst, size_t count) {
  convert_to_f32(dtype, src, dst, static_cast<int64_t>(count));
}

void narrow_from_f32(DType dtype, const float* src, void* dst, size_t count) {
  auto* bytes = static_cast<unsigned char*>(dst);
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, count * sizeof(float));
      return;
    case DType::kBF16:
      for (size_t i = 0; i < count; ++i) {
        const uint16_t bits = f32_to_bf16(src[i]);
        std::memcpy(bytes + 2 * i, &bits, 2);
      }
      return;
    case DType::kF16:
      for (size_t i = 0; i < count; ++i) {
        const uint16_t bits = f32_to_f16(src[i]);
        std::memcpy(bytes + 2 * i, &bits, 2);
      }
      return;
    default:
      TPS_CHECK(false, "narrow_from_f32: {} is not F32/BF16/F16", dtype_name(dtype));
  }
}

}  // namespace tpserve::parallel
