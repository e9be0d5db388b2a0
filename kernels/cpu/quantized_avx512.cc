// The quantized row kernels for AVX-512 (F): 16 columns per step, otherwise as quantized_avx2.cc:
// each weight is _mm512_fmadd_ps(scale, code, min), the scalar set's fmaf bit for bit.
// Compiled for AVX-512 whatever the build's baseline; called only where the processor has it.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/quantized_kernels.h"

#pragma GCC push_options
// GCC 12 reports its own avx512fintrin.h (_mm512_undefined_* inside the conversions) as
// "maybe uninitialized": a false positive of the header, not of this file.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx2,fma")

namespace tpserve::kernels::cpu {

namespace {

constexpr int64_t kWidth = 16;

// Columns c .. c + 15 of a row's codes as floats (c even for 4 bits).
inline __m512 load_codes(const uint8_t* row_codes, int bits, int64_t c) {
  __m128i bytes;
  if (bits == 8) {
    bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row_codes + c));
  } else {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row_codes + c / 2));
    const __m128i mask = _mm_set1_epi8(0x0F);
    // low nibble = even column, high nibble = odd column: interleave them back into order
    bytes = _mm_unpacklo_epi8(_mm_and_si128(b, mask), _mm_and_si128(_mm_srli_epi16(b, 4), mask));
  }
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes));
}

inline float code_at(const uint8_t* row_codes, int bits, int64_t col) {
  if (bits == 8) return row_codes[col];
  const uint8_t byte = row_codes[col / 2];
  return static_cast<float>(col % 2 == 0 ? (byte & 0x0Fu) : (byte >> 4));
}

template <typename Vector, typename Scalar>
inline void walk_row(const QuantizedMatrix& w, int64_t r, Vector vector, Scalar scalar) {
  const uint8_t* codes = w.codes + r * code_row_bytes(w.bits, w.cols);
  const float* scales = static_cast<const float*>(w.scales) + r * w.num_groups;
  const float* mins = static_cast<const float*>(w.mins) + r * w.num_groups;
  if (w.group_index != nullptr) {
    int64_t c = 0;
    for (; c + kWidth <= w.cols; c += kWidth) {
      const __m512i g = _mm512_loadu_si512(w.group_index + c);
      const __m512 scale = _mm512_i32gather_ps(g, scales, 4);
      const __m512 min = _mm512_i32gather_ps(g, mins, 4);
      vector(c, _mm512_fmadd_ps(scale, load_codes(codes, w.bits, c), min));
    }
    for (; c < w.cols; ++c) {
      const int32_t g = w.group_index[c];
      scalar(c, std::fma(scales[g], code_at(codes, w.bits, c), mins[g]));
    }
    return;
  }
  for (int64_t g = 0, begin = 0; begin < w.cols; ++g, begin += w.group_size) {
    const int64_t end = std::min(w.cols, begin + w.group_size);
    const __m512 scale = _mm512_set1_ps(scales[g]);
    const __m512 min = _mm512_set1_ps(mins[g]);
    int64_t c = begin;
    for (; c + kWidth <= end; c += kWidth) {
      vector(c, _mm512_fmadd_ps(scale, load_codes(codes, w.bits, c), min));
    }
    for (; c < end; ++c) scalar(c, std::fma(scales[g], code_at(codes, w.bits, c), mins[g]));
  }
}

void dequantize_rows(const QuantizedMatrix& w, int64_t row_begin, int64_t row_end, float* out) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    float* row = out + (r - row_begin) * w.cols;
    walk_row(
        w, r, [&](int64_t c, __m512 v) { _mm512_storeu_ps(row + c, v); },
        [&](int64_t c, float v) { row[c] = v; });
  }
}

void dot_rows(const QuantizedMatrix& w, const float* x, int64_t row_begin, int64_t row_end,
              float* y) {
  if (chunked_dot_applies(w)) {
    chunked_dot_rows_avx2(w, x, row_begin, row_end, y);
    return;
  }
  for (int64_t r = row_begin; r < row_end; ++r) {
    __m512 acc = _mm512_setzero_ps();
    float tail = 0.0f;
    walk_row(
        w, r, [&](int64_t c, __m512 v) { acc = _mm512_fmadd_ps(v, _mm512_loadu_ps(x + c), acc); },
        [&](int64_t c, float v) { tail += v * x[c]; });
    y[r - row_begin] = _mm512_reduce_add_ps(acc) + tail;
  }
}

}  // namespace

const QuantizedKernels kAvx512QuantizedKernels = {Isa::kAvx512, "avx512", &dequantize_rows,
                                                  &dot_rows};

}  // namespace tpserve::kernels::cpu

#pragma GCC pop_options
