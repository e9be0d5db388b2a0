// The one internal representation of a quantized linear weight (DESIGN.md): packed unsigned int4 /
// int8 codes with a scale and a min per (output row, group of input columns). GPTQ, AWQ and GGUF's
// simple block types all load into it, and every backend's quantized_linear reads it as it is.
//
//   W[n][k] = scale[n][g] * code[n][k] + min[n][g],   g = group_index ? group_index[k]
//                                                                    : k / group_size
//
// The min form (rather than scale * (code - zero)) expresses every source exactly enough and
// without a division:
//   GPTQ / AWQ   w = s * (q - z)          ->  scale = s, min = -s * z
//   GGUF Q4_0    w = d * (q - 8)          ->  scale = d, min = -8 d      (q in 0..15)
//   GGUF Q8_0    w = d * q, q signed int8 ->  code = q + 128, scale = d, min = -128 d
//   GGUF Q4_1    w = d * q + m            ->  scale = d, min = m
// and a kernel evaluates it as one fused multiply-add per weight.
//
// Layout (row-major along the output, so a decode GEMV streams each row once and a column-parallel
// shard is a contiguous run of rows):
//   codes   [rows, code_row_bytes(bits, cols)] bytes. 8-bit: one byte per column. 4-bit: column
//           2i in the low nibble of byte i, column 2i + 1 in the high nibble.
//   scales  [rows, num_groups] in the backend's compute dtype; mins likewise.
//   group_index [cols] int32 or nullptr: act-order (GPTQ desc_act) group of each input column.
#pragma once

#include <cstdint>

namespace tpserve::kernels {

struct QuantizedMatrix {
  int bits = 4;            // 4 or 8
  int64_t rows = 0;        // output features (n)
  int64_t cols = 0;        // input features (k)
  int64_t group_size = 0;  // input columns per group when group_index is null
  int64_t num_groups = 0;
  const uint8_t* codes = nullptr;
  const void* scales = nullptr;
  const void* mins = nullptr;
  const int32_t* group_index = nullptr;
  // Set only by the CUDA backend's prepare_quantized, and read only by its kernels
  // (kernels/cuda/quantized_linear.h): 4-bit words hold columns 0, 2, 4, 6 of their 8 in the low
  // 16 bits and 1, 3, 5, 7 in the high 16 bits; and, for act-order, the columns are sorted by
  // group, column j of the codes being input column input_order[j] (group_index then null).
  // zero_points: `mins` holds integer zero points instead, W = scale * (code - zero).
  bool paired_nibbles = false;
  bool zero_points = false;
  const int32_t* input_order = nullptr;
};

// Bytes of one row of codes: cols for 8 bits, cols / 2 for 4 bits (cols must be even).
inline int64_t code_row_bytes(int bits, int64_t cols) { return bits == 4 ? cols / 2 : cols; }

// The shape rules every backend relies on; throws tpserve::Error (kInvalidArgument) naming the
// broken one: bits 4 or 8; 4-bit cols and group_size even; num_groups covers every column.
void check_quantized_shape(const QuantizedMatrix& matrix);

}  // namespace tpserve::kernels
