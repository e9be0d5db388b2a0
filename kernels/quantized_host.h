// A quantized matrix on the host, in the layout of kernels/quantized.h: what every format reader
// (GPTQ, AWQ, GGUF blocks) builds, one row block at a time, before the weight store uploads it.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/quantized.h"

namespace tpserve::kernels {

class QuantizedHostMatrix {
 public:
  QuantizedHostMatrix() = default;
  // All codes 0, scales 0, mins 0. group_index empty: column k is in group k / group_size.
  QuantizedHostMatrix(int bits, int64_t rows, int64_t cols, int64_t group_size, int64_t num_groups);

  int bits() const { return bits_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t group_size() const { return group_size_; }
  int64_t num_groups() const { return num_groups_; }

  // Code of (row, col), 0 <= code < 2^bits.
  void set_code(int64_t row, int64_t col, uint32_t code);
  uint32_t code(int64_t row, int64_t col) const;
  // w = scale * (code - zero) (GPTQ, AWQ, GGUF Q4_0 / Q8_0 with their fixed zero): min = -scale * zero.
  void set_scale_zero(int64_t row, int64_t group, float scale, float zero);
  // w = scale * code + min (GGUF Q4_1's d and m).
  void set_scale_min(int64_t row, int64_t group, float scale, float min);
  // Act-order: the group of each input column (cols entries, each < num_groups).
  void set_group_index(std::vector<int32_t> group_of_column);

  int64_t group_of(int64_t col) const;
  // The float32 weight W[row][col] as every kernel must compute it: fmaf(scale, code, min).
  float weight(int64_t row, int64_t col) const;
  // The whole matrix dequantized, [rows, cols] row-major (the reference of the kernel tests).
  std::vector<float> dequantize() const;

  // A view of the host arrays (scales and mins float32), for the CPU backend and uploads.
  QuantizedMatrix view() const;

  const std::vector<uint8_t>& codes() const { return codes_; }
  // The packed codes as bytes (quantized.h's layout), to fill many at once (synthetic weights).
  std::vector<uint8_t>& code_bytes() { return codes_; }
  const std::vector<float>& scales() const { return scales_; }
  const std::vector<float>& mins() const { return mins_; }
  const std::vector<int32_t>& group_index() const { return group_index_; }

 private:
  int bits_ = 4;
  int64_t rows_ = 0;
  int64_t cols_ = 0;
  int64_t group_size_ = 0;
  int64_t num_groups_ = 0;
  std::vector<uint8_t> codes_;
  std::vector<float> scales_;  // [rows, num_groups]
  std::vector<float> mins_;
  std::vector<int32_t> group_index_;
};

}  // namespace tpserve::kernels
