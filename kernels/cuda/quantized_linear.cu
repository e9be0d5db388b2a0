// The CUDA quantized linear: layout preparation, the fused small-batch kernel and the
// dequantizing path's kernels (quantized_linear.h says how they fit together).
#include "kernels/cuda/quantized_linear.h"

#include <algorithm>
#include <cstdlib>
#include <string_view>

#include "common/error.h"
#include "kernels/cuda/cuda_types.cuh"

namespace tpserve::kernels::cuda {

namespace {

constexpr int kWarps = 8;            // per block of the fused kernel, each on its own K range
constexpr int kBlockRows = 32;       // output rows per block: two 16-row mma tiles
constexpr int kLaneColumns = 32;     // input columns one lane dequantizes per iteration
constexpr int kWarpColumns = 4 * kLaneColumns;  // a warp iteration: 4 lanes per row x 32

// ---- the compute dtypes' pairs ----------------------------------------------------------------

template <typename T>
struct Traits;
template <>
struct Traits<__nv_bfloat16> {
  using Pair = __nv_bfloat162;
  // 0x4300 is bf16 128.0, whose 7 mantissa bits count units: 0x4300 | c == 128 + c for c < 128.
  static constexpr uint32_t kMagic2 = 0x43004300u;
};
template <>
struct Traits<__half> {
  using Pair = __half2;
  // 0x6400 is fp16 1024.0: 0x6400 | c == 1024 + c for c < 1024.
  static constexpr uint32_t kMagic2 = 0x64006400u;
};

template <typename P>
__device__ __forceinline__ P as_pair(uint32_t bits) {
  return *reinterpret_cast<const P*>(&bits);
}
template <typename P>
__device__ __forceinline__ uint32_t pair_bits(P pair) {
  return *reinterpret_cast<const uint32_t*>(&pair);
}

__device__ __forceinline__ uint32_t word_of(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// Two adjacent columns of a paired 4-bit word (the nibbles at bits shift and 16 + shift) as a
// pair in the compute dtype: ((magic + code) - sub) * scale + add, exact but for the fma's one
// rounding (sub is magic, or magic + zero point: small integers, exact in both dtypes).
template <typename T>
__device__ __forceinline__ uint32_t dequant4(uint32_t word, int shift, uint32_t scale2,
                                             uint32_t sub2, uint32_t add2) {
  using P = typename Traits<T>::Pair;
  const uint32_t biased = ((word >> shift) & 0x000F000Fu) | Traits<T>::kMagic2;
  const P code = __hsub2(as_pair<P>(biased), as_pair<P>(sub2));  // exact
  return pair_bits(__hfma2(code, as_pair<P>(scale2), as_pair<P>(add2)));
}

// Byte i of `word` as a float: 0x4B000000 | b is 2^23 + b, exactly.
__device__ __forceinline__ float byte_as_float(uint32_t word, int i) {
  return __uint_as_float(__byte_perm(word, 0x4B000000u, 0x7540u | i)) - 8388608.0f;
}
template <typename T>
__device__ __forceinline__ uint32_t pack_pair(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack_pair<__nv_bfloat16>(float lo, float hi) {
  return pair_bits(__floats2bfloat162_rn(lo, hi));
}
template <>
__device__ __forceinline__ uint32_t pack_pair<__half>(float lo, float hi) {
  return pair_bits(__floats2half2_rn(lo, hi));
}
// Bytes i and i + 1 of an 8-bit word, dequantized, as a pair.
template <typename T>
__device__ __forceinline__ uint32_t dequant8(uint32_t word, int i, float scale, float min) {
  return pack_pair<T>(fmaf(scale, byte_as_float(word, i), min),
                      fmaf(scale, byte_as_float(word, i + 1), min));
}

template <typename T>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4],
                                                        uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__half>(float (&c)[4], const uint32_t (&a)[4],
                                                 uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Streaming 16-byte load of weights read once (no L1 allocation).
__device__ __forceinline__ uint4 load_stream(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// ---- the fused kernel ---------------------------------------------------------------------------

// One warp step's weight loads, issued a step ahead: a lane's 32 columns of its four rows and
// their groups' scale and min (or zero point) bits, and where its columns start (x, read from
// L2 when the step is computed, is not prefetched: registers).
template <int kBits>
struct Stage {
  static constexpr int kVecs = kBits == 4 ? 1 : 2;  // 16-byte loads per row
  uint4 q[4][kVecs];
  uint32_t scale_bits[4], min_bits[4];
  int64_t col;
  bool valid;
};

template <typename T, int kBits>
__device__ __forceinline__ void load_stage(Stage<kBits>& st, int64_t step, int t, int64_t k_begin,
                                           int64_t k_end, const int64_t (&rows)[4],
                                           int64_t k_total, const uint8_t* __restrict__ codes,
                                           const T* __restrict__ scales, const T* __restrict__ mins,
                                           int64_t group_size, int64_t num_groups) {
  const int64_t row_bytes = kBits == 4 ? k_total / 2 : k_total;
  const int64_t kc = step + kLaneColumns * t;
  st.valid = kc < k_end;
  st.col = st.valid ? kc : k_begin;  // an invalid lane reads valid memory, weighs 0
  const int64_t group = st.col / group_size;
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const uint8_t* p = codes + rows[r] * row_bytes + (kBits == 4 ? st.col / 2 : st.col);
#pragma unroll
    for (int v = 0; v < Stage<kBits>::kVecs; ++v) st.q[r][v] = load_stream(p + 16 * v);
    const int64_t at = rows[r] * num_groups + group;
    st.scale_bits[r] = st.valid ? reinterpret_cast<const unsigned short*>(scales)[at] : 0u;
    st.min_bits[r] = st.valid ? reinterpret_cast<const unsigned short*>(mins)[at] : 0u;
  }
}

// Dequantizes a stage's weights into A fragments and multiplies them into acc.
template <typename T, int kBits, int kMTiles>
__device__ __forceinline__ void compute_stage(const Stage<kBits>& st, bool zero_points, int g,
                                              const T* __restrict__ x, int m, int64_t k_total,
                                              float (&acc)[2][kMTiles][4]) {
  using P = typename Traits<T>::Pair;
  uint4 xv[kMTiles][4];  // x's columns [col, col + 32) of tokens 8 mt + g
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
    const int token = mt * 8 + g;
    const uint4* p = reinterpret_cast<const uint4*>(x + static_cast<int64_t>(token) * k_total + st.col);
#pragma unroll
    for (int v = 0; v < 4; ++v) {
      xv[mt][v] = (st.valid && token < m) ? __ldg(p + v) : make_uint4(0, 0, 0, 0);
    }
  }
  // 4 bits: w = (biased - sub) * scale + add as pairs, with biased = magic + code and either
  // sub = magic, add = min, or (zero points) sub = magic + zero, add = 0: exact up to the one
  // rounding of the fma. 8 bits: w = fma(scale, code, min) in float32, min = -scale * zero.
  uint32_t scale2[4], sub2[4], add2[4];
  float scale_f[4], min_f[4];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    scale2[r] = st.scale_bits[r] | (st.scale_bits[r] << 16);
    const uint32_t value2 = st.min_bits[r] | (st.min_bits[r] << 16);
    const float value = to_float(as_pair<P>(value2).x);
    scale_f[r] = to_float(as_pair<P>(scale2[r]).x);
    if (zero_points) {
      const float magic = to_float(as_pair<P>(Traits<T>::kMagic2).x);
      const uint32_t biased_zero = pair_bits(P{from_float<T>(magic + value), from_float<T>(magic + value)});
      sub2[r] = biased_zero;
      add2[r] = 0u;
      min_f[r] = -(scale_f[r] * value);  // exact: 8 by at most 9 significant bits
    } else {
      sub2[r] = Traits<T>::kMagic2;
      add2[r] = value2;
      min_f[r] = value;
    }
  }
#pragma unroll
  for (int s = 0; s < 8; ++s) {
    uint32_t a[2][4];
#pragma unroll
    for (int tile = 0; tile < 2; ++tile) {
      const int r0 = 2 * tile, r1 = 2 * tile + 1;  // rows g and g + 8 of the tile
      if constexpr (kBits == 4) {
        // Word s / 2 holds columns 8 (s / 2) .. + 7; sub-step s takes 4 (s % 2) .. + 3 of them:
        // pairs (0,1), (2,3) at shifts 0, 4, or pairs (4,5), (6,7) at shifts 8, 12.
        const uint32_t w0 = word_of(st.q[r0][0], s / 2), w1 = word_of(st.q[r1][0], s / 2);
        const int shift = (s % 2) * 8;
        a[tile][0] = dequant4<T>(w0, shift, scale2[r0], sub2[r0], add2[r0]);
        a[tile][1] = dequant4<T>(w1, shift, scale2[r1], sub2[r1], add2[r1]);
        a[tile][2] = dequant4<T>(w0, shift + 4, scale2[r0], sub2[r0], add2[r0]);
        a[tile][3] = dequant4<T>(w1, shift + 4, scale2[r1], sub2[r1], add2[r1]);
      } else {
        // Word s holds columns 4s .. 4s + 3 in its bytes.
        const uint32_t w0 = word_of(st.q[r0][s / 4], s % 4), w1 = word_of(st.q[r1][s / 4], s % 4);
        a[tile][0] = dequant8<T>(w0, 0, scale_f[r0], min_f[r0]);
        a[tile][1] = dequant8<T>(w1, 0, scale_f[r1], min_f[r1]);
        a[tile][2] = dequant8<T>(w0, 2, scale_f[r0], min_f[r0]);
        a[tile][3] = dequant8<T>(w1, 2, scale_f[r1], min_f[r1]);
      }
    }
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
      const uint32_t b0 = s % 2 == 0 ? word_of(xv[mt][s / 2], 0) : word_of(xv[mt][s / 2], 2);
      const uint32_t b1 = s % 2 == 0 ? word_of(xv[mt][s / 2], 1) : word_of(xv[mt][s / 2], 3);
#pragma unroll
      for (int tile = 0; tile < 2; ++tile) mma16816<T>(acc[tile][mt], a[tile], b0, b1);
    }
  }
}

// Block (blockIdx.x, blockIdx.y): output rows [32 bx, 32 bx + 32) over input columns
// [k_per_split by, ...). Warp w takes the 128-column steps w, w + 8, ... of that range (with
// kPrefetch, loading step i + 1 while it computes step i). In one step, lane (g = lane / 4, t = lane % 4)
// dequantizes columns [kc, kc + 32), kc = step + 32 t, of rows g, g + 8, g + 16, g + 24 (A
// fragments of the two row tiles) and reads x's columns [kc, kc + 32) of tokens 8 mt + g (B
// fragments). The mma's k index is a permutation of the real columns, the same for A and B: in
// sub-step s (0..7), the mma's k pair (2t, 2t+1) is column kc + 4s + {0, 1} and its pair
// (2t+8, 2t+9) is kc + 4s + {2, 3}. Four consecutive columns of x are then 8 contiguous bytes:
// B's two registers.
//
// With several splits, each block writes its float32 sums to `partials`; the last block of a row
// block to finish (counted in `arrivals`, which it resets to 0 for the next call) adds them up,
// adds the bias and writes out: one launch either way.
template <typename T, int kBits, int kMTiles, bool kPrefetch>
__global__ void __launch_bounds__(kWarps * 32, kMTiles <= 2 ? 2 : 1)
    quantized_gemv_kernel(const T* __restrict__ x, int m, int64_t k_total,
                          const uint8_t* __restrict__ codes, const T* __restrict__ scales,
                          const T* __restrict__ mins, bool zero_points, int64_t n_total,
                          int64_t group_size, int64_t num_groups, const T* __restrict__ bias,
                          T* __restrict__ out, float* __restrict__ partials,
                          unsigned* __restrict__ arrivals, int64_t k_per_split) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int64_t row_base = static_cast<int64_t>(blockIdx.x) * kBlockRows;
  const int64_t k_begin = static_cast<int64_t>(blockIdx.y) * k_per_split;
  const int64_t k_end = min(k_total, k_begin + k_per_split);

  int64_t rows[4];
#pragma unroll
  for (int r = 0; r < 4; ++r) rows[r] = min(row_base + 8 * r + g, n_total - 1);  // tail: reread

  float acc[2][kMTiles][4];
#pragma unroll
  for (int tile = 0; tile < 2; ++tile)
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[tile][mt][e] = 0.0f;

  constexpr int64_t kStride = kWarps * kWarpColumns;
  int64_t step = k_begin + warp * kWarpColumns;
  if (step < k_end) {
    if constexpr (kPrefetch) {
      Stage<kBits> current, next;
      load_stage<T>(current, step, t, k_begin, k_end, rows, k_total, codes, scales, mins,
                    group_size, num_groups);
      for (; step < k_end; step += kStride) {
        const bool more = step + kStride < k_end;  // the same for the whole warp
        if (more) {
          load_stage<T>(next, step + kStride, t, k_begin, k_end, rows, k_total, codes, scales,
                        mins, group_size, num_groups);
        }
        compute_stage<T, kBits, kMTiles>(current, zero_points, g, x, m, k_total, acc);
        if (more) current = next;
      }
    } else {
      for (; step < k_end; step += kStride) {
        Stage<kBits> current;
        load_stage<T>(current, step, t, k_begin, k_end, rows, k_total, codes, scales, mins,
                      group_size, num_groups);
        compute_stage<T, kBits, kMTiles>(current, zero_points, g, x, m, k_total, acc);
      }
    }
  }

  // The block's warps each hold a partial sum over their steps: add them in shared memory.
  constexpr int kTokens = kMTiles * 8;
  __shared__ float partial[kWarps][kTokens][kBlockRows + 1];
  __shared__ bool last_block;
#pragma unroll
  for (int tile = 0; tile < 2; ++tile)
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        // C fragment: e 0, 1 -> row g, tokens 2t, 2t+1; e 2, 3 -> row g + 8.
        const int row = tile * 16 + g + (e >= 2 ? 8 : 0);
        const int token = mt * 8 + 2 * t + (e & 1);
        partial[warp][token][row] = acc[tile][mt][e];
      }
  __syncthreads();
  const bool split = gridDim.y > 1;
  const int64_t count = static_cast<int64_t>(m) * n_total;
  for (int i = threadIdx.x; i < kTokens * kBlockRows; i += kWarps * 32) {
    const int token = i / kBlockRows, row = i % kBlockRows;
    const int64_t n = row_base + row;
    if (token >= m || n >= n_total) continue;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += partial[w][token][row];
    if (split) {
      partials[blockIdx.y * count + token * n_total + n] = sum;
    } else {
      if (bias != nullptr) sum += to_float(bias[n]);
      out[token * n_total + n] = from_float<T>(sum);
    }
  }
  if (!split) return;
  // Publish this block's partials, then count it in; the last one of the row block sums up.
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned before = atomicAdd(&arrivals[blockIdx.x], 1u);
    last_block = before == gridDim.y - 1;
    if (last_block) arrivals[blockIdx.x] = 0;  // every block of this launch has arrived
  }
  __syncthreads();
  if (!last_block) return;
  __threadfence();
  for (int i = threadIdx.x; i < kTokens * kBlockRows; i += kWarps * 32) {
    const int token = i / kBlockRows, row = i % kBlockRows;
    const int64_t n = row_base + row;
    if (token >= m || n >= n_total) continue;
    float sum = 0.0f;
    for (unsigned s = 0; s < gridDim.y; ++s) sum += __ldcg(&partials[s * count + token * n_total + n]);
    if (bias != nullptr) sum += to_float(bias[n]);
    out[token * n_total + n] = from_float<T>(sum);
  }
}

// ---- preparation and the dequantizing path ------------------------------------------------------

// The code of column `col` of a row (in the row's own column order).
__device__ __forceinline__ uint32_t code_at(const uint8_t* row, int bits, bool paired,
                                            int64_t col) {
  if (bits == 8) return row[col];
  if (paired) {
    const uint32_t word = reinterpret_cast<const uint32_t*>(row)[col / 8];
    const int e = static_cast<int>(col % 8);
    const int position = e % 2 == 0 ? e / 2 : 4 + e / 2;
    return (word >> (4 * position)) & 0xFu;
  }
  return (row[col / 2] >> (4 * (col % 2))) & 0xFu;
}

// One thread per output word (8 columns at 4 bits, 4 at 8 bits).
__global__ void prepare_kernel(const uint8_t* __restrict__ in, uint8_t* __restrict__ out,
                               int bits, int64_t rows, int64_t cols,
                               const int32_t* __restrict__ order, bool pair) {
  const int per_word = bits == 4 ? 8 : 4;
  const int64_t words_per_row = cols / per_word;
  const int64_t row_bytes = bits == 4 ? cols / 2 : cols;
  const int64_t count = rows * words_per_row;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / words_per_row, word = i % words_per_row;
    const uint8_t* src = in + row * row_bytes;
    uint32_t packed = 0;
    for (int e = 0; e < per_word; ++e) {
      const int64_t col = word * per_word + e;
      const uint32_t code = code_at(src, bits, false, order != nullptr ? order[col] : col);
      int position = e;
      if (bits == 4 && pair) position = e % 2 == 0 ? e / 2 : 4 + e / 2;
      packed |= code << (bits * position);
    }
    reinterpret_cast<uint32_t*>(out + row * row_bytes)[word] = packed;
  }
}

template <typename T>
__global__ void dequantize_rows_kernel(QuantizedMatrix w, int64_t row_begin, int64_t rows,
                                       T* __restrict__ out) {
  const int64_t row_bytes = w.bits == 4 ? w.cols / 2 : w.cols;
  const int64_t count = rows * w.cols;
  const T* scales = static_cast<const T*>(w.scales);
  const T* mins = static_cast<const T*>(w.mins);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / w.cols, col = i % w.cols, n = row_begin + r;
    const uint32_t code = code_at(w.codes + n * row_bytes, w.bits, w.paired_nibbles, col);
    const int64_t group = w.group_index != nullptr ? w.group_index[col] : col / w.group_size;
    const float scale = to_float(scales[n * w.num_groups + group]);
    const float min_or_zero = to_float(mins[n * w.num_groups + group]);
    const float value = w.zero_points ? scale * (static_cast<float>(code) - min_or_zero)
                                      : fmaf(scale, static_cast<float>(code), min_or_zero);
    const int64_t input_col = w.input_order != nullptr ? w.input_order[col] : col;
    out[r * w.cols + input_col] = from_float<T>(value);
  }
}

// The common case of dequantize_rows_kernel, one 32-bit word (8 or 4 columns, one group) per
// thread and one 16- or 8-byte store: groups in column order of a multiple of the word's columns.
template <typename T, int kBits>
__global__ void dequantize_words_kernel(QuantizedMatrix w, int64_t row_begin, int64_t rows,
                                        T* __restrict__ out) {
  constexpr int kPerWord = kBits == 4 ? 8 : 4;
  const int64_t words_per_row = w.cols / kPerWord;
  const int64_t count = rows * words_per_row;
  const T* scales = static_cast<const T*>(w.scales);
  const T* mins = static_cast<const T*>(w.mins);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / words_per_row, word_index = i % words_per_row, n = row_begin + r;
    const uint32_t word = reinterpret_cast<const uint32_t*>(w.codes + n * (w.cols * kBits / 8))[word_index];
    const int64_t at = n * w.num_groups + word_index * kPerWord / w.group_size;
    const float scale = to_float(scales[at]);
    const float min_or_zero = to_float(mins[at]);
    float values[kPerWord];
#pragma unroll
    for (int e = 0; e < kPerWord; ++e) {
      int position = e;
      if (kBits == 4 && w.paired_nibbles) position = e % 2 == 0 ? e / 2 : 4 + e / 2;
      const float code = static_cast<float>((word >> (kBits * position)) & ((1u << kBits) - 1));
      values[e] = w.zero_points ? scale * (code - min_or_zero) : fmaf(scale, code, min_or_zero);
    }
    uint32_t packed[kPerWord / 2];
#pragma unroll
    for (int e = 0; e < kPerWord / 2; ++e) packed[e] = pack_pair<T>(values[2 * e], values[2 * e + 1]);
    T* dst = out + r * w.cols + word_index * kPerWord;
    if constexpr (kBits == 4) {
      *reinterpret_cast<uint4*>(dst) = make_uint4(packed[0], packed[1], packed[2], packed[3]);
    } else {
      *reinterpret_cast<uint2*>(dst) = make_uint2(packed[0], packed[1]);
    }
  }
}

template <typename T>
__global__ void gather_columns_kernel(const T* __restrict__ x, int m, int64_t k,
                                      const int32_t* __restrict__ order, T* __restrict__ out) {
  const int64_t count = static_cast<int64_t>(m) * k;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / k, col = i % k;
    out[i] = x[row * k + order[col]];
  }
}

template <typename T, int kBits>
void launch_gemv_bits(cudaStream_t stream, const QuantizedGemvPlan& plan, const T* x,
                      const QuantizedMatrix& w, const T* bias, int m, T* out, float* partials,
                      unsigned* arrivals) {
  const dim3 grid(static_cast<unsigned>((w.rows + kBlockRows - 1) / kBlockRows),
                  static_cast<unsigned>(plan.splits));
  const auto launch = [&](auto kernel) {
    kernel<<<grid, kWarps * 32, 0, stream>>>(
        x, m, w.cols, w.codes, static_cast<const T*>(w.scales), static_cast<const T*>(w.mins),
        w.zero_points, w.rows, w.group_size, w.num_groups, bias, out, partials, arrivals,
        plan.k_per_split);
  };
  const bool prefetch = quantized_prefetch();
  if (m <= 8) {
    prefetch ? launch(quantized_gemv_kernel<T, kBits, 1, true>)
             : launch(quantized_gemv_kernel<T, kBits, 1, false>);
  } else if (m <= 16) {
    prefetch ? launch(quantized_gemv_kernel<T, kBits, 2, true>)
             : launch(quantized_gemv_kernel<T, kBits, 2, false>);
  } else {
    prefetch ? launch(quantized_gemv_kernel<T, kBits, 4, true>)
             : launch(quantized_gemv_kernel<T, kBits, 4, false>);
  }
  TPSERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_prepare_quantized(cudaStream_t stream, uint8_t* codes, int bits, int64_t rows,
                              int64_t cols, const int32_t* order, bool pair_nibbles,
                              uint8_t* scratch) {
  const int per_word = bits == 4 ? 8 : 4;
  if (cols % per_word != 0 || (bits != 4 && bits != 8)) {
    raise(ErrorCode::kInvalidArgument, "cuda quantized prepare: {} columns of {} bits are not "
          "whole 32-bit words", cols, bits);
  }
  if (order == nullptr && !(bits == 4 && pair_nibbles)) return;  // nothing to change
  const int64_t bytes = rows * code_row_bytes(bits, cols);
  const int threads = 256;
  const unsigned blocks = blocks_for(rows * (cols / per_word), threads, 8192);
  // Without a new order every thread rewrites only the word it read: in place is safe.
  uint8_t* out = order != nullptr ? scratch : codes;
  prepare_kernel<<<blocks, threads, 0, stream>>>(codes, out, bits, rows, cols, order,
                                                 pair_nibbles);
  TPSERVE_CUDA_CHECK_LAUNCH();
  if (order != nullptr) {
    TPSERVE_CUDA_CHECK(cudaMemcpyAsync(codes, scratch, static_cast<size_t>(bytes),
                                       cudaMemcpyDeviceToDevice, stream));
  }
}

bool fused_quantized_fits(const QuantizedMatrix& w, const void* x) {
  return w.group_index == nullptr && w.cols % kLaneColumns == 0 && w.group_size > 0 &&
         w.group_size % kLaneColumns == 0 && (w.bits == 8 || w.paired_nibbles) && aligned16(x) &&
         aligned16(w.codes);
}

bool quantized_prefetch() {
  static const bool value = [] {
    const char* text = std::getenv("TPSERVE_QUANT_PREFETCH");
    return text == nullptr || std::string_view(text) != "0";
  }();
  return value;
}

int quantized_blocks_per_sm() {
  static const int value = [] {
    const char* text = std::getenv("TPSERVE_QUANT_BLOCKS_PER_SM");
    const int parsed = text != nullptr ? std::atoi(text) : 0;
    return parsed >= 1 && parsed <= 256 ? parsed : 4;
  }();
  return value;
}

QuantizedGemvPlan plan_quantized_gemv(const QuantizedMatrix& w, int m, int num_sms) {
  QuantizedGemvPlan plan;
  const int64_t row_blocks = (w.rows + kBlockRows - 1) / kBlockRows;
  // Enough blocks to fill the GPU, each warp of a split keeping at least one step.
  const int64_t target = static_cast<int64_t>(quantized_blocks_per_sm()) * num_sms;
  const int64_t wanted = (target + row_blocks - 1) / row_blocks;
  const int64_t most = std::max<int64_t>(1, w.cols / (kWarps * kWarpColumns));
  const int64_t splits = std::clamp<int64_t>(wanted, 1, std::min<int64_t>(most, 32));
  const int64_t lanes = w.cols / kLaneColumns;
  plan.k_per_split = (lanes + splits - 1) / splits * kLaneColumns;
  plan.splits = static_cast<int>((w.cols + plan.k_per_split - 1) / plan.k_per_split);
  plan.partial_bytes =
      plan.splits > 1 ? static_cast<size_t>(plan.splits) * m * w.rows * sizeof(float) : 0;
  plan.row_blocks = row_blocks;
  return plan;
}

void launch_quantized_gemv(DType dtype, cudaStream_t stream, const QuantizedGemvPlan& plan,
                           const void* x, const QuantizedMatrix& w, const void* bias, int m,
                           void* out, float* partials, unsigned* arrivals) {
  if (m <= 0 || m > 32) {
    raise(ErrorCode::kInvalidArgument, "cuda quantized gemv: {} tokens (1..32 per call)", m);
  }
  TPSERVE_DISPATCH_DTYPE(dtype, T, {
    if (w.bits == 4) {
      launch_gemv_bits<T, 4>(stream, plan, static_cast<const T*>(x), w,
                             static_cast<const T*>(bias), m, static_cast<T*>(out), partials,
                             arrivals);
    } else {
      launch_gemv_bits<T, 8>(stream, plan, static_cast<const T*>(x), w,
                             static_cast<const T*>(bias), m, static_cast<T*>(out), partials,
                             arrivals);
    }
  });
}

void launch_gather_columns(DType dtype, cudaStream_t stream, const void* x, int m, int64_t k,
                           const int32_t* order, void* out) {
  const int threads = 256;
  TPSERVE_DISPATCH_DTYPE(dtype, T, {
    gather_columns_kernel<T><<<blocks_for(m * k, threads, 4096), threads, 0, stream>>>(
        static_cast<const T*>(x), m, k, order, static_cast<T*>(out));
  });
  TPSERVE_CUDA_CHECK_LAUNCH();
}

void launch_dequantize_rows(DType dtype, cudaStream_t stream, const QuantizedMatrix& w,
                            int64_t row_begin, int64_t rows, void* out) {
  const int threads = 256;
  const int per_word = w.bits == 4 ? 8 : 4;
  const bool by_words = w.group_index == nullptr && w.input_order == nullptr &&
                        w.cols % per_word == 0 && w.group_size % per_word == 0 && aligned16(out) &&
                        aligned16(w.codes) && (w.cols * w.bits / 8) % 4 == 0;
  TPSERVE_DISPATCH_DTYPE(dtype, T, {
    if (by_words && w.bits == 4) {
      dequantize_words_kernel<T, 4><<<blocks_for(rows * w.cols / 8, threads, 16384), threads, 0,
                                      stream>>>(w, row_begin, rows, static_cast<T*>(out));
    } else if (by_words) {
      dequantize_words_kernel<T, 8><<<blocks_for(rows * w.cols / 4, threads, 16384), threads, 0,
                                      stream>>>(w, row_begin, rows, static_cast<T*>(out));
    } else {
      dequantize_rows_kernel<T><<<blocks_for(rows * w.cols, threads, 16384), threads, 0,
                                  stream>>>(w, row_begin, rows, static_cast<T*>(out));
    }
  });
  TPSERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace tpserve::kernels::cuda
