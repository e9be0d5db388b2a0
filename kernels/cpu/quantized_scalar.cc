// The portable quantized row kernels: the reference the vector sets are tested against.
#include <cmath>

#include "kernels/cpu/quantized_kernels.h"

namespace tpserve::kernels::cpu {

namespace {

uint32_t code_at(const uint8_t* row_codes, int bits, int64_t col) {
  if (bits == 8) return row_codes[col];
  const uint8_t byte = row_codes[col / 2];
  return col % 2 == 0 ? (byte & 0x0Fu) : (byte >> 4);
}

// Calls emit(col, weight) for every column of row r, in column order.
template <typename Emit>
void for_each_weight(const QuantizedMatrix& w, int64_t r, Emit emit) {
  const uint8_t* codes = w.codes + r * code_row_bytes(w.bits, w.cols);
  const float* scales = static_cast<const float*>(w.scales) + r * w.num_groups;
  const float* mins = static_cast<const float*>(w.mins) + r * w.num_groups;
  for (int64_t c = 0; c < w.cols; ++c) {
    const int64_t g = w.group_index != nullptr ? w.group_index[c] : c / w.group_size;
    emit(c, std::fma(scales[g], static_cast<float>(code_at(codes, w.bits, c)), mins[g]));
  }
}

void dequantize_rows(const QuantizedMatrix& w, int64_t row_begin, int64_t row_end, float* out) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    float* row = out + (r - row_begin) * w.cols;
    for_each_weight(w, r, [&](int64_t c, float value) { row[c] = value; });
  }
}

void dot_rows(const QuantizedMatrix& w, const float* x, int64_t row_begin, int64_t row_end,
              float* y) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    float sum = 0.0f;
    for_each_weight(w, r, [&](int64_t c, float value) { sum += value * x[c]; });
    y[r - row_begin] = sum;
  }
}

}  // namespace

const QuantizedKernels kScalarQuantizedKernels = {Isa::kScalar, "scalar", &dequantize_rows,
                                                  &dot_rows};

}  // namespace tpserve::kernels::cpu
