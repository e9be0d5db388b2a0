#include "kernels/quantized_device.h"

#include <utility>

namespace tpserve::kernels {

DeviceQuantizedMatrix::DeviceQuantizedMatrix(Backend& backend, const QuantizedHostMatrix& host)
    : backend_(&backend) {
  const size_t element = dtype_size(backend.compute_dtype());
  try {
    const auto allocate = [&](int index, size_t bytes) {
      buffers_[index] = backend.allocate(bytes);
      bytes_ += bytes;
      return buffers_[index];
    };
    void* codes = allocate(0, host.codes().size());
    backend.copy_to_device(codes, host.codes().data(), host.codes().size());
    void* scales = allocate(1, host.scales().size() * element);
    backend.upload_f32(scales, host.scales().data(), static_cast<int64_t>(host.scales().size()));
    void* mins = allocate(2, host.mins().size() * element);
    backend.upload_f32(mins, host.mins().data(), static_cast<int64_t>(host.mins().size()));
    matrix_ = host.view();
    matrix_.codes = static_cast<const uint8_t*>(codes);
    matrix_.scales = scales;
    matrix_.mins = mins;
    matrix_.group_index = nullptr;
    if (!host.group_index().empty()) {
      const size_t bytes = host.group_index().size() * sizeof(int32_t);
      void* index = allocate(3, bytes);
      backend.copy_to_device(index, host.group_index().data(), bytes);
      matrix_.group_index = static_cast<const int32_t*>(index);
    }
    backend.prepare_quantized(matrix_, host);
  } catch (...) {
    reset();
    throw;
  }
}

DeviceQuantizedMatrix::DeviceQuantizedMatrix(DeviceQuantizedMatrix&& other) noexcept
    : backend_(other.backend_), buffers_(std::exchange(other.buffers_, {})),
      bytes_(std::exchange(other.bytes_, 0)), matrix_(other.matrix_) {}

DeviceQuantizedMatrix& DeviceQuantizedMatrix::operator=(DeviceQuantizedMatrix&& other) noexcept {
  if (this != &other) {
    reset();
    backend_ = other.backend_;
    buffers_ = std::exchange(other.buffers_, {});
    bytes_ = std::exchange(other.bytes_, 0);
    matrix_ = other.matrix_;
  }
  return *this;
}

void DeviceQuantizedMatrix::reset() noexcept {
  for (void*& buffer : buffers_) {
    if (buffer != nullptr) backend_->release(buffer);
    buffer = nullptr;
  }
  bytes_ = 0;
}

}  // namespace tpserve::kernels
