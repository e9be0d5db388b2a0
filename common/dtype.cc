#include "common/dtype.h"

#include <array>
#include <cmath>

#include "common/check.h"

namespace tpserve {

namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  int size;
};

constexpr std::array<DTypeInfo, 15> kDTypes = {{
    {DType::kF32, "F32", 4},   {DType::kF16, "F16", 2},      {DType::kBF16, "BF16", 2},
    {DType::kF64, "F64", 8},   {DType::kI8, "I8", 1},        {DType::kU8, "U8", 1},
    {DType::kI16, "I16", 2},   {DType::kU16, "U16", 2},      {DType::kI32, "I32", 4},
    {DType::kU32, "U32", 4},   {DType::kI64, "I64", 8},      {DType::kU64, "U64", 8},
    {DType::kBool, "BOOL", 1}, {DType::kF8E4M3, "F8_E4M3", 1}, {DType::kF8E5M2, "F8_E5M2", 1},
}};

const DTypeInfo& info(DType dtype) {
  for (const auto& entry : kDTypes) {
    if (entry.dtype == dtype) return entry;
  }
  TPS_CHECK(false, "unknown dtype {}", static_cast<int>(dtype));
  __builtin_unreachable();
}

uint32_t float_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

float bits_float(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

}  // namespace

int dtype_size(DType dtype) { return info(dtype).size; }

std::string_view dtype_name(DType dtype) { return info(dtype).name; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& entry : kDTypes) {
    if (entry.name == name) return entry.dtype;
  }
  return std::nullopt;
}

uint16_t f32_to_bf16(float value) {
  uint32_t bits = float_bits(value);
  if (std::isnan(value)) return static_cast<uint16_t>((bits >> 16) | 0x40);
  uint32_t rounding = 0x7fff + ((bits >> 16) & 1);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float f16_to_f32(uint16_t half) {
  uint32_t sign = static_cast<uint32_t>(half & 0x8000) << 16;
  uint32_t exponent = (half >> 10) & 0x1f;
  uint32_t mantissa = half & 0x3ff;
  if (exponent == 0x1f) return bits_float(sign | 0x7f800000 | (mantissa << 13));  // inf / NaN
  if (exponent == 0) {
    // Zero or subnormal: value = mantissa * 2^-24, exact in binary32.
    float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  return bits_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

uint16_t f32_to_f16(float value) {
  uint32_t bits = float_bits(value);
  uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  float magnitude = std::fabs(value);
  if (std::isnan(value)) return sign | 0x7e00;
  if (magnitude >= 65520.0f) return sign | 0x7c00;  // rounds to inf
  if (magnitude < 6.103515625e-05f) {
    // Subnormal half: round magnitude / 2^-24 to the nearest even integer.
    float scaled = magnitude * 16777216.0f;
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));
  }
  uint32_t abs_bits = bits & 0x7fffffff;
  uint32_t rounded = abs_bits + 0xfff + ((abs_bits >> 13) & 1);
  return sign | static_cast<uint16_t>(((rounded >> 13) - (112 << 10)) & 0x7fff);
}

}  // namespace tpserve
