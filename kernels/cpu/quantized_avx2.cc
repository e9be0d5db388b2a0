// The quantized row kernels for AVX2 + FMA: 8 columns per step. Codes widen byte -> int32 -> float
// and each weight is _mm256_fmadd_ps(scale, code, min), the scalar set's fmaf bit for bit.
// Compiled for AVX2 whatever the build's baseline; called only where the processor has it.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/quantized_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace tpserve::kernels::cpu {

namespace {

constexpr int64_t kWidth = 8;
constexpr int64_t kChunk = 32;  // columns of one step of the chunked GEMV

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
  if (chunked_dot_applies(w)) {
    chunked_dot_rows_avx2(w, x, row_begin, row_end, y);
    return;
  }
  for (int64_t r = row_begin; r < row_end; ++r) {
    __m256 acc = _mm256_setzero_ps();
    float tail = 0.0f;
    walk_row(
        w, r, [&](int64_t c, __m256 v) { acc = _mm256_fmadd_ps(v, _mm256_loadu_ps(x + c), acc); },
        [&](int64_t c, float v) { tail += v * x[c]; });
    y[r - row_begin] = horizontal_sum(acc) + tail;
  }
}

// Eight signed bytes as floats.
inline __m256 widen8(__m128i bytes) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)); }

}  // namespace

bool chunked_dot_applies(const QuantizedMatrix& w) {
  return w.group_index == nullptr && w.group_size % kChunk == 0 && w.cols % kChunk == 0;
}

// Each group's dot product factors as
//   sum_c (s q_c + m) x_c = s (sum_c (q_c - h) x_c) + (m + s h) (sum_c x_c),   h = 2^(bits - 1):
// the codes meet x in one FMA per weight, the scale once per group, and the offset once per group
// against the group's sum of x, computed once per call. Centring the codes on h (a signed byte:
// q ^ 0x80 for 8 bits, q - 8 for 4) keeps the two terms from cancelling where the min is about
// -s h, as for GGUF's Q8_0 / Q4_0 (m + s h is then 0) and symmetric GPTQ (zero near h). For 4-bit codes, byte i of a 32-column
// chunk holds columns 2i (low nibble) and 2i + 1 (high): x is reordered once per call so that
// each chunk lists its even columns, then its odd ones, and the nibbles need no interleaving.
void chunked_dot_rows_avx2(const QuantizedMatrix& w, const float* x, int64_t row_begin,
                           int64_t row_end, float* y) {
  thread_local std::vector<float> reordered;
  thread_local std::vector<float> group_sums;
  const int64_t cols = w.cols;
  const int64_t groups = w.num_groups;
  const float* xs = x;
  if (w.bits == 4) {
    reordered.resize(static_cast<size_t>(cols));
    for (int64_t c = 0; c < cols; c += kChunk) {
      for (int64_t i = 0; i < kChunk / 2; ++i) {
        reordered[static_cast<size_t>(c + i)] = x[c + 2 * i];
        reordered[static_cast<size_t>(c + kChunk / 2 + i)] = x[c + 2 * i + 1];
      }
    }
    xs = reordered.data();
  }
  group_sums.assign(static_cast<size_t>(groups), 0.0f);
  for (int64_t g = 0; g < groups; ++g) {
    __m256 sum = _mm256_setzero_ps();
    const int64_t end = std::min(cols, (g + 1) * w.group_size);
    for (int64_t c = g * w.group_size; c < end; c += kWidth) sum = _mm256_add_ps(sum, _mm256_loadu_ps(x + c));
    group_sums[static_cast<size_t>(g)] = horizontal_sum(sum);
  }
  const __m128i low_nibbles = _mm_set1_epi8(0x0F);
  const __m128i eight = _mm_set1_epi8(8);
  const __m128i sign = _mm_set1_epi8(static_cast<char>(0x80));
  const float half = w.bits == 4 ? 8.0f : 128.0f;
  const __m256 centre = _mm256_set1_ps(half);
  const int64_t row_bytes = code_row_bytes(w.bits, cols);
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint8_t* codes = w.codes + r * row_bytes;
    const float* scales = static_cast<const float*>(w.scales) + r * groups;
    const float* mins = static_cast<const float*>(w.mins) + r * groups;
    __m256 total = _mm256_setzero_ps();
    __m256 min_total = _mm256_setzero_ps();
    int64_t g = 0;
    for (; g + kWidth <= groups; g += kWidth) {
      const __m256 offset = _mm256_fmadd_ps(_mm256_loadu_ps(scales + g), centre, _mm256_loadu_ps(mins + g));
      min_total = _mm256_fmadd_ps(offset, _mm256_loadu_ps(group_sums.data() + g), min_total);
    }
    float min_tail = 0.0f;
    for (int64_t t = g; t < groups; ++t) {
      min_tail += std::fma(scales[t], half, mins[t]) * group_sums[static_cast<size_t>(t)];
    }
    int64_t c = 0;
    for (g = 0; g < groups; ++g) {
      __m256 acc0 = _mm256_setzero_ps();
      __m256 acc1 = _mm256_setzero_ps();
      const int64_t end = std::min(cols, c + w.group_size);
      for (; c < end; c += kChunk) {
        const float* xc = xs + c;
        __m128i q0, q1, q2, q3;
        if (w.bits == 4) {
          const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + c / 2));
          const __m128i even = _mm_sub_epi8(_mm_and_si128(b, low_nibbles), eight);
          const __m128i odd = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(b, 4), low_nibbles), eight);
          q0 = even;
          q1 = _mm_unpackhi_epi64(even, even);
          q2 = odd;
          q3 = _mm_unpackhi_epi64(odd, odd);
        } else {
          const __m128i lo = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + c)), sign);
          const __m128i hi = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + c + 16)), sign);
          q0 = lo;
          q1 = _mm_unpackhi_epi64(lo, lo);
          q2 = hi;
          q3 = _mm_unpackhi_epi64(hi, hi);
        }
        acc0 = _mm256_fmadd_ps(widen8(q0), _mm256_loadu_ps(xc), acc0);
        acc1 = _mm256_fmadd_ps(widen8(q1), _mm256_loadu_ps(xc + 8), acc1);
        acc0 = _mm256_fmadd_ps(widen8(q2), _mm256_loadu_ps(xc + 16), acc0);
        acc1 = _mm256_fmadd_ps(widen8(q3), _mm256_loadu_ps(xc + 24), acc1);
      }
      total = _mm256_fmadd_ps(_mm256_set1_ps(scales[g]), _mm256_add_ps(acc0, acc1), total);
    }
    y[r - row_begin] = horizontal_sum(total) + horizontal_sum(min_total) + min_tail;
  }
}

namespace {

}  // namespace

const QuantizedKernels kAvx2QuantizedKernels = {Isa::kAvx2, "avx2", &dequantize_rows, &dot_rows};

}  // namespace tpserve::kernels::cpu

#pragma GCC pop_options
