// The quantized row kernels for AVX2 + FMA: 8 columns per step. Codes widen byte -> int32 -> float
// and each weight is _mm256_fmadd_ps(scale, code, min), the scalar set's fmaf bit for bit.
// Compiled for AVX2 whatever the build's baseline; called only where the processor has it.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/quantized_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace tpserve::kernels::cpu {

namespace {

constexpr int64_t kWidth = 8;

// Columns c .. c + 7 of a row's codes as floats (c even for 4 bits).
inline __m256 load_codes(const uint8_t* row_codes, int bits, int64_t c) {
  __m128i bytes;
  if (bits == 8) {
    bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row_codes + c));
  } else {
    uint32_t packed;
    std::memcpy(&packed, row_codes + c / 2, sizeof(packed));
    const __m128i b = _mm_cvtsi32_si128(static_cast<int>(packed));
    const __m128i mask = _mm_set1_epi8(0x0F);
    // low nibble = even column, high nibble = odd column: interleave them back into order
    bytes = _mm_unpacklo_epi8(_mm_and_si128(b, mask), _mm_and_si128(_mm_srli_epi16(b, 4), mask));
  }
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes));
}

inline float code_at(const uint8_t* row_codes, int bits, int64_t col) {
  if (bits == 8) return row_codes[col];
  const uint8_t byte = row_codes[col / 2];
  return static_cast<float>(col % 2 == 0 ? (byte & 0x0Fu) : (byte >> 4));
}

inline float horizontal_sum(__m256 v) {
  const __m128 sum4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 sum2 = _mm_add_ps(sum4, _mm_movehl_ps(sum4, sum4));
  return _mm_cvtss_f32(_mm_add_ss(sum2, _mm_shuffle_ps(sum2, sum2, 1)));
}

// Walks row r in steps of 8 columns (each inside one group unless act-order gathers per column),
// calling vector(c, weights) and, for the columns left at a group's end, scalar(c, weight).
template <typename Vector, typename Scalar>
inline void walk_row(const QuantizedMatrix& w, int64_t r, Vector vector, Scalar scalar) {
  const uint8_t* codes = w.codes + r * code_row_bytes(w.bits, w.cols);
  const float* scales = static_cast<const float*>(w.scales) + r * w.num_groups;
  const float* mins = static_cast<const float*>(w.mins) + r * w.num_groups;
  if (w.group_index != nullptr) {
    int64_t c = 0;
    for (; c + kWidth <= w.cols; c += kWidth) {
      const __m256i g = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.group_index + c));
      const __m256 scale = _mm256_i32gather_ps(scales, g, 4);
      const __m256 min = _mm256_i32gather_ps(mins, g, 4);
      vector(c, _mm256_fmadd_ps(scale, load_codes(codes, w.bits, c), min));
    }
    for (; c < w.cols; ++c) {
      const int32_t g = w.group_index[c];
      scalar(c, std::fma(scales[g], code_at(codes, w.bits, c), mins[g]));
    }
    return;
  }
  for (int64_t g = 0, begin = 0; begin < w.cols; ++g, begin += w.group_size) {
    const int64_t end = std::min(w.cols, begin + w.group_size);
    const __m256 scale = _mm256_set1_ps(scales[g]);
    const __m256 min = _mm256_set1_ps(mins[g]);
    int64_t c = begin;
    for (; c + kWidth <= end; c += kWidth) {
      vector(c, _mm256_fmadd_ps(scale, load_codes(codes, w.bits, c), min));
    }
    for (; c < end; ++c) scalar(c, std::fma(scales[g], code_at(codes, w.bits, c), mins[g]));
  }
}

void dequantize_rows(const QuantizedMatrix& w, int64_t row_begin, int64_t row_end, float* out) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    float* row = out + (r - row_begin) * w.cols;
    walk_row(
        w, r, [&](int64_t c, __m256 v) { _mm256_storeu_ps(row + c, v); },
        [&](int64_t c, float v) { row[c] = v; });
  }
}

void dot_rows(const QuantizedMatrix& w, const float* x, int64_t row_begin, int64_t row_end,
              float* y) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    __m256 acc = _mm256_setzero_ps();
    float tail = 0.0f;
    walk_row(
        w, r, [&](int64_t c, __m256 v) { acc = _mm256_fmadd_ps(v, _mm256_loadu_ps(x + c), acc); },
        [&](int64_t c, float v) { tail += v * x[c]; });
    y[r - row_begin] = horizontal_sum(acc) + tail;
  }
}

}  // namespace

const QuantizedKernels kAvx2QuantizedKernels = {Isa::kAvx2, "avx2", &dequantize_rows, &dot_rows};

}  // namespace tpserve::kernels::cpu

#pragma GCC pop_options
