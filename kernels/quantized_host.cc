#include "kernels/quantized_host.h"

#include <cmath>

#include "common/check.h"
#include "common/error.h"

namespace tpserve::kernels {

void check_quantized_shape(const QuantizedMatrix& m) {
  if (m.bits != 4 && m.bits != 8) {
    raise(ErrorCode::kInvalidArgument, "quantized matrix: {} bits (4 and 8 are supported)", m.bits);
  }
  if (m.rows < 0 || m.cols <= 0 || m.num_groups <= 0) {
    raise(ErrorCode::kInvalidArgument, "quantized matrix: shape [{}, {}] with {} groups", m.rows,
          m.cols, m.num_groups);
  }
  if (m.bits == 4 && m.cols % 2 != 0) {
    raise(ErrorCode::kInvalidArgument, "quantized matrix: 4-bit codes need an even column count, "
          "got {}", m.cols);
  }
  if (m.group_index == nullptr) {
    if (m.group_size <= 0 || (m.bits == 4 && m.group_size % 2 != 0) ||
        (m.cols + m.group_size - 1) / m.group_size > m.num_groups) {
      raise(ErrorCode::kInvalidArgument, "quantized matrix: group size {} with {} groups does not "
            "cover {} columns (4-bit groups must be even)", m.group_size, m.num_groups, m.cols);
    }
  }
}

QuantizedHostMatrix::QuantizedHostMatrix(int bits, int64_t rows, int64_t cols, int64_t group_size,
                                         int64_t num_groups)
    : bits_(bits), rows_(rows), cols_(cols), group_size_(group_size), num_groups_(num_groups) {
  check_quantized_shape(view());
  codes_.assign(static_cast<size_t>(rows * code_row_bytes(bits, cols)), 0);
  scales_.assign(static_cast<size_t>(rows * num_groups), 0.0f);
  mins_.assign(static_cast<size_t>(rows * num_groups), 0.0f);
}

void QuantizedHostMatrix::set_code(int64_t row, int64_t col, uint32_t code) {
  TPS_CHECK(code < (1u << bits_), "code {} does not fit {} bits", code, bits_);
  const int64_t row_bytes = code_row_bytes(bits_, cols_);
  if (bits_ == 8) {
    codes_[static_cast<size_t>(row * row_bytes + col)] = static_cast<uint8_t>(code);
    return;
  }
  uint8_t& byte = codes_[static_cast<size_t>(row * row_bytes + col / 2)];
  byte = (col % 2 == 0) ? static_cast<uint8_t>((byte & 0xF0) | code)
                        : static_cast<uint8_t>((byte & 0x0F) | (code << 4));
}

uint32_t QuantizedHostMatrix::code(int64_t row, int64_t col) const {
  const int64_t row_bytes = code_row_bytes(bits_, cols_);
  if (bits_ == 8) return codes_[static_cast<size_t>(row * row_bytes + col)];
  const uint8_t byte = codes_[static_cast<size_t>(row * row_bytes + col / 2)];
  return col % 2 == 0 ? (byte & 0x0Fu) : (byte >> 4);
}

void QuantizedHostMatrix::set_scale_zero(int64_t row, int64_t group, float scale, float zero) {
  set_scale_min(row, group, scale, -scale * zero);
}

void QuantizedHostMatrix::set_scale_min(int64_t row, int64_t group, float scale, float min) {
  const auto i = static_cast<size_t>(row * num_groups_ + group);
  scales_[i] = scale;
  mins_[i] = min;
}

void QuantizedHostMatrix::set_group_index(std::vector<int32_t> group_of_column) {
  TPS_CHECK(static_cast<int64_t>(group_of_column.size()) == cols_, "{} group indices for {} columns",
            group_of_column.size(), cols_);
  for (int32_t g : group_of_column) {
    TPS_CHECK(g >= 0 && g < num_groups_, "group index {} outside [0, {})", g, num_groups_);
  }
  group_index_ = std::move(group_of_column);
}

int64_t QuantizedHostMatrix::group_of(int64_t col) const {
  return group_index_.empty() ? col / group_size_ : group_index_[static_cast<size_t>(col)];
}

float QuantizedHostMatrix::weight(int64_t row, int64_t col) const {
  const auto i = static_cast<size_t>(row * num_groups_ + group_of(col));
  return std::fma(scales_[i], static_cast<float>(code(row, col)), mins_[i]);
}

std::vector<float> QuantizedHostMatrix::dequantize() const {
  std::vector<float> out(static_cast<size_t>(rows_ * cols_));
  for (int64_t r = 0; r < rows_; ++r) {
    for (int64_t c = 0; c < cols_; ++c) out[static_cast<size_t>(r * cols_ + c)] = weight(r, c);
  }
  return out;
}

QuantizedMatrix QuantizedHostMatrix::view() const {
  QuantizedMatrix m;
  m.bits = bits_;
  m.rows = rows_;
  m.cols = cols_;
  m.group_size = group_size_;
  m.num_groups = num_groups_;
  m.codes = codes_.data();
  m.scales = scales_.data();
  m.mins = mins_.data();
  m.group_index = group_index_.empty() ? nullptr : group_index_.data();
  return m;
}

}  // namespace tpserve::kernels
