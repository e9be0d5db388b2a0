// Element types of checkpoints and device buffers, and the exact scalar conversions between them.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace tpserve {

enum class DType : uint8_t { kF32, kF16, kBF16, kF64, kI8, kU8, kI16, kU16, kI32, kU32, kI64, kU64, kBool, kF8E4M3, kF8E5M2 };

// Bytes per element.
int dtype_size(DType dtype);

// The name safetensors uses ("F32", "BF16", ...).
std::string_view dtype_name(DType dtype);

// Inverse of dtype_name; nullopt for an unknown name.
std::optional<DType> dtype_from_name(std::string_view name);

// The dtypes a model's floating-point weights may come in.
inline bool is_weight_dtype(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
}

// bfloat16 is the upper half of an IEEE binary32: widening is a shift.
inline float bf16_to_f32(uint16_t bits) {
  uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &wide, sizeof(value));
  return value;
}

// Round to nearest even, as torch does when it casts float32 to bfloat16; NaN stays NaN.
uint16_t f32_to_bf16(float value);

// IEEE binary16 -> binary32, exact for every input (subnormals, inf, NaN).
float f16_to_f32(uint16_t bits);

// binary32 -> binary16, round to nearest even.
uint16_t f32_to_f16(float value);

// Widen n elements of a weight dtype (F32/F16/BF16) to float32, bit for bit f16_to_f32 /
// bf16_to_f32 of each element (NaN payloads included). src and dst may be unaligned. Vectorized
// with the best instruction set this processor has (dtype_convert.cc).
void convert_to_f32(DType dtype, const void* src, float* dst, int64_t n);

// The instruction sets convert_to_f32 dispatches between, for tests and benchmarks.
enum class ConvertIsa : uint8_t { kScalar, kAvx2, kAvx512 };
bool convert_isa_supported(ConvertIsa isa);
ConvertIsa best_convert_isa();
std::string_view convert_isa_name(ConvertIsa isa);
// convert_to_f32 on one instruction set (it must be supported: a broken invariant otherwise).
void convert_to_f32_with(ConvertIsa isa, DType dtype, const void* src, float* dst, int64_t n);

}  // namespace tpserve
