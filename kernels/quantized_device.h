// A quantized matrix in a backend's memory: the host matrix's codes, scales and mins (in the
// compute dtype) and group index uploaded, then prepared for the backend's kernels
// (Backend::prepare_quantized). What the weight store keeps per quantized linear, and what the
// kernel tests and `tpserve bench --gemv` upload.
#pragma once

#include <array>
#include <cstddef>

#include "kernels/ops.h"
#include "kernels/quantized.h"
#include "kernels/quantized_host.h"

namespace tpserve::kernels {

class DeviceQuantizedMatrix {
 public:
  DeviceQuantizedMatrix() = default;
  DeviceQuantizedMatrix(Backend& backend, const QuantizedHostMatrix& host);
  ~DeviceQuantizedMatrix() { reset(); }
  DeviceQuantizedMatrix(DeviceQuantizedMatrix&& other) noexcept;
  DeviceQuantizedMatrix& operator=(DeviceQuantizedMatrix&& other) noexcept;
  DeviceQuantizedMatrix(const DeviceQuantizedMatrix&) = delete;
  DeviceQuantizedMatrix& operator=(const DeviceQuantizedMatrix&) = delete;

  // The view every quantized_linear call takes; valid while this object lives.
  const QuantizedMatrix& matrix() const { return matrix_; }
  // Device bytes held (codes + scales + mins + group index).
  size_t bytes() const { return bytes_; }

 private:
  void reset() noexcept;

  Backend* backend_ = nullptr;
  std::array<void*, 4> buffers_{};  // codes, scales, mins, group index
  size_t bytes_ = 0;
  QuantizedMatrix matrix_;
};

}  // namespace tpserve::kernels
