// Widening F16 / BF16 weights to float32, vectorized with runtime dispatch. Every path is bit for
// bit the scalar reference (f16_to_f32 / bf16_to_f32 in dtype.cc) on all 65536 inputs, NaN
// payloads included (tests/common/dtype_convert_test.cc checks each ISA this processor has):
//   bf16: the upper half of a binary32, so widening is a 16-bit shift (AVX2: 8 per step, AVX-512:
//         16) -- exact for every input.
//   f16:  F16C's vcvtph2ps, exact for normals, subnormals and infinities; it quiets a signaling
//         NaN (sets mantissa bit 22) where the reference keeps the payload as is, so NaN lanes are
//         rebuilt the reference's way (sign | 0x7f800000 | mantissa << 13) with a blend.
#include <cpuid.h>
#include <immintrin.h>

#include <cstring>

#include "common/check.h"
#include "common/dtype.h"

namespace tpserve {

namespace {

void bf16_scalar(const unsigned char* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t bits;
    std::memcpy(&bits, src + 2 * i, 2);
    dst[i] = bf16_to_f32(bits);
  }
}

void f16_scalar(const unsigned char* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t bits;
    std::memcpy(&bits, src + 2 * i, 2);
    dst[i] = f16_to_f32(bits);
  }
}

// Per-function targets (GCC and clang both take the attribute; clang ignores GCC's target pragma).
#define TPSERVE_TARGET_AVX2 __attribute__((target("avx2,f16c")))
#define TPSERVE_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx2,f16c")))

TPSERVE_TARGET_AVX2 void bf16_avx2(const unsigned char* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i half = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    const __m256i wide = _mm256_slli_epi32(_mm256_cvtepu16_epi32(half), 16);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), wide);
  }
  bf16_scalar(src + 2 * i, dst + i, n - i);
}

TPSERVE_TARGET_AVX2 void f16_avx2(const unsigned char* src, float* dst, int64_t n) {
  const __m256i exponent_mask = _mm256_set1_epi32(0x7c00);
  const __m256i mantissa_mask = _mm256_set1_epi32(0x03ff);
  const __m256i sign_mask = _mm256_set1_epi32(0x8000);
  const __m256i f32_inf = _mm256_set1_epi32(0x7f800000);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i half = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    __m256i out = _mm256_castps_si256(_mm256_cvtph_ps(half));
    const __m256i bits = _mm256_cvtepu16_epi32(half);
    const __m256i mantissa = _mm256_and_si256(bits, mantissa_mask);
    // NaN: exponent all ones and mantissa non-zero.
    const __m256i nan = _mm256_andnot_si256(
        _mm256_cmpeq_epi32(mantissa, _mm256_setzero_si256()),
        _mm256_cmpeq_epi32(_mm256_and_si256(bits, exponent_mask), exponent_mask));
    const __m256i reference_nan =
        _mm256_or_si256(_mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(bits, sign_mask), 16), f32_inf),
                        _mm256_slli_epi32(mantissa, 13));
    out = _mm256_blendv_epi8(out, reference_nan, nan);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), out);
  }
  f16_scalar(src + 2 * i, dst + i, n - i);
}

TPSERVE_TARGET_AVX512 void bf16_avx512(const unsigned char* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i half = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 2 * i));
    const __m512i wide = _mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16);
    _mm512_storeu_si512(dst + i, wide);
  }
  bf16_avx2(src + 2 * i, dst + i, n - i);
}

TPSERVE_TARGET_AVX512 void f16_avx512(const unsigned char* src, float* dst, int64_t n) {
  const __m512i exponent_mask = _mm512_set1_epi32(0x7c00);
  const __m512i mantissa_mask = _mm512_set1_epi32(0x03ff);
  const __m512i sign_mask = _mm512_set1_epi32(0x8000);
  const __m512i f32_inf = _mm512_set1_epi32(0x7f800000);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i half = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 2 * i));
    const __m512i out = _mm512_castps_si512(_mm512_cvtph_ps(half));
    const __m512i bits = _mm512_cvtepu16_epi32(half);
    const __m512i mantissa = _mm512_and_si512(bits, mantissa_mask);
    const __mmask16 nan = _mm512_cmpeq_epi32_mask(_mm512_and_si512(bits, exponent_mask), exponent_mask) &
                          _mm512_cmpneq_epi32_mask(mantissa, _mm512_setzero_si512());
    const __m512i reference_nan = _mm512_or_si512(
        _mm512_or_si512(_mm512_slli_epi32(_mm512_and_si512(bits, sign_mask), 16), f32_inf),
        _mm512_slli_epi32(mantissa, 13));
    _mm512_storeu_si512(dst + i, _mm512_mask_blend_epi32(nan, out, reference_nan));
  }
  f16_avx2(src + 2 * i, dst + i, n - i);
}

using Widen = void (*)(const unsigned char*, float*, int64_t);

// CPUID leaf 1, ECX bit 29 (clang's __builtin_cpu_supports has no "f16c").
bool has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}

}  // namespace

bool convert_isa_supported(ConvertIsa isa) {
  switch (isa) {
    case ConvertIsa::kScalar: return true;
    case ConvertIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && has_f16c();
    case ConvertIsa::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             convert_isa_supported(ConvertIsa::kAvx2);
  }
  return false;
}

ConvertIsa best_convert_isa() {
  static const ConvertIsa best = convert_isa_supported(ConvertIsa::kAvx512) ? ConvertIsa::kAvx512
                                 : convert_isa_supported(ConvertIsa::kAvx2) ? ConvertIsa::kAvx2
                                                                            : ConvertIsa::kScalar;
  return best;
}

std::string_view convert_isa_name(ConvertIsa isa) {
  switch (isa) {
    case ConvertIsa::kScalar: return "scalar";
    case ConvertIsa::kAvx2: return "avx2+f16c";
    case ConvertIsa::kAvx512: return "avx512";
  }
  return "?";
}

void convert_to_f32_with(ConvertIsa isa, DType dtype, const void* src, float* dst, int64_t n) {
  TPS_CHECK(convert_isa_supported(isa), "convert_to_f32: this processor lacks {}",
            convert_isa_name(isa));
  const auto* bytes = static_cast<const unsigned char*>(src);
  if (n <= 0) return;
  Widen widen = nullptr;
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::kBF16:
      widen = isa == ConvertIsa::kAvx512 ? bf16_avx512 : isa == ConvertIsa::kAvx2 ? bf16_avx2 : bf16_scalar;
      break;
    case DType::kF16:
      widen = isa == ConvertIsa::kAvx512 ? f16_avx512 : isa == ConvertIsa::kAvx2 ? f16_avx2 : f16_scalar;
      break;
    default:
      TPS_CHECK(false, "convert_to_f32: {} is not a weight dtype", dtype_name(dtype));
  }
  widen(bytes, dst, n);
}

void convert_to_f32(DType dtype, const void* src, float* dst, int64_t n) {
  convert_to_f32_with(best_convert_isa(), dtype, src, dst, n);
}

}  // namespace tpserve
