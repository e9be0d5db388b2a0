#include "parallel/host_staged_communicator.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <string>

#include "common/check.h"
#include "common/error.h"
#include "parallel/gpu_communicator.h"
#include "parallel/half_convert.h"

namespace tpserve::parallel {

namespace {

cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

}  // namespace

#define TPS_CUDA(call) detail::check_cuda(static_cast<int>(call), #call, host_.rank())

HostStagedCommunicator::HostStagedCommunicator(MpiCommunicator& host, int device, void* stream)
    : host_(host), stream_(stream), device_(device) {
  // Agreed by every rank, so one rank's unusable GPU makes all of them raise, none wait.
  std::string local_error;
  try {
    TPS_CUDA(cudaSetDevice(device_));
  } catch (const Error& e) {
    local_error = e.what();
  }
  if (!host_.all_ok(local_error.empty())) {
    if (!local_error.empty()) raise(ErrorCode::kUnavailable, "{}", local_error);
    raise(ErrorCode::kUnavailable,
          "host-staged communicator: another rank could not set up its GPU (see its log line); "
          "rank {} stops too",
          host_.rank());
  }
}

HostStagedCommunicator::~HostStagedCommunicator() {
  if (staging_ != nullptr) cudaFreeHost(staging_);
}

unsigned char* HostStagedCommunicator::staging(size_t bytes) {
  if (bytes <= staging_bytes_) return staging_;
  // Every collective ends with the stream synchronised, so the old buffer is idle here.
  const size_t grown = std::max(bytes, 2 * staging_bytes_);
  if (staging_ != nullptr) cudaFreeHost(staging_);
  staging_ = nullptr;
  staging_bytes_ = 0;
  void* buffer = nullptr;
  TPS_CUDA(cudaHostAlloc(&buffer, grown, cudaHostAllocDefault));
  staging_ = static_cast<unsigned char*>(buffer);
  staging_bytes_ = grown;
  return staging_;
}

void HostStagedCommunicator::copy_to_host(void* host, const void* device, size_t bytes) {
  TPS_CUDA(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, as_stream(stream_)));
}

void HostStagedCommunicator::copy_to_device(void* device, const void* host, size_t bytes) {
  TPS_CUDA(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, as_stream(stream_)));
}

void HostStagedCommunicator::synchronize() { TPS_CUDA(cudaStreamSynchronize(as_stream(stream_))); }

void HostStagedCommunicator::all_reduce_sum(void* data, size_t count, DType dtype) {
  TPS_CHECK(dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16,
            "the host-staged communicator has no reduction for {}", dtype_name(dtype));
  if (count == 0 || size() == 1) return;
  const size_t bytes = count * static_cast<size_t>(dtype_size(dtype));
  unsigned char* host = staging(bytes);
  copy_to_host(host, data, bytes);
  synchronize();
  if (dtype == DType::kF32) {
    host_.all_reduce_sum(host, count, DType::kF32);
  } else {
    // Sum in f32 and round once, as a GPU kernel with f32 accumulation would.
    sum_.resize(count);
    widen_to_f32(dtype, host, sum_.data(), count);
    host_.all_reduce_sum(sum_.data(), count, DType::kF32);
    narrow_from_f32(dtype, sum_.data(), host, count);
  }
  copy_to_device(data, host, bytes);
  synchronize();
}

void HostStagedCommunicator::all_gather(const void* send, size_t count, DType dtype, void* recv) {
  const size_t bytes = count * static_cast<size_t>(dtype_size(dtype));
  if (bytes == 0) return;
  const size_t ranks = static_cast<size_t>(size());
  // [gathered: ranks * bytes][this rank's send: bytes]
  unsigned char* gathered = staging(bytes * (ranks + 1));
  unsigned char* mine = gathered + bytes * ranks;
  copy_to_host(mine, send, bytes);
  synchronize();
  if (bytes % 4 == 0 && bytes / 4 <= static_cast<size_t>(INT_MAX)) {
    // The MPI communicator gathers typed elements; I32 moves any 4-byte-aligned payload bit-exact.
    host_.all_gather(mine, bytes / 4, DType::kI32, gathered);
  } else {
    for (int root = 0; root < size(); ++root) {
      unsigned char* slot = gathered + bytes * static_cast<size_t>(root);
      if (root == rank()) std::memcpy(slot, mine, bytes);
      host_.broadcast(slot, bytes, root);
    }
  }
  copy_to_device(recv, gathered, bytes * ranks);
  synchronize();
}

void HostStagedCommunicator::broadcast(void* data, size_t bytes, int root) {
  TPS_CHECK(root >= 0 && root < size(), "broadcast root {} outside 0..{}", root, size() - 1);
  if (bytes == 0 || size() == 1) return;
  unsigned char* host = staging(bytes);
  if (rank() == root) {
    copy_to_host(host, data, bytes);
    synchronize();
  }
  host_.broadcast(host, bytes, root);
  if (rank() != root) {
    copy_to_device(data, host, bytes);
    synchronize();
  }
}

void HostStagedCommunicator::barrier() {
  synchronize();
  host_.barrier();
}

bool HostStagedCommunicator::all_ok(bool ok) { return host_.all_ok(ok); }

}  // namespace tpserve::parallel
