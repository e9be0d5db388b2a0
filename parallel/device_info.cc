#include "parallel/device_info.h"

#include <fmt/format.h>

#if TPSERVE_HAVE_CUDA
#include <cuda_runtime.h>
#include <nccl.h>
#endif

namespace tpserve::parallel {

std::string cuda_version_text(int version) {
  if (version <= 0) return "-";
  return fmt::format("{}.{}", version / 1000, version % 1000 / 10);
}

std::string nccl_version_text(int version) {
  if (version <= 0) return "-";
  // NCCL_VERSION(X, Y, Z) is X * 10000 + Y * 100 + Z from 2.9 on.
  return fmt::format("{}.{}.{}", version / 10000, version / 100 % 100, version % 100);
}

#if TPSERVE_HAVE_CUDA

DeviceReport local_device_report() {
  DeviceReport report;
  cudaRuntimeGetVersion(&report.cuda_runtime_version);
  cudaDriverGetVersion(&report.cuda_driver_version);
  ncclGetVersion(&report.nccl_version);
  int count = 0;
  if (const cudaError_t status = cudaGetDeviceCount(&count); status != cudaSuccess) {
    report.error = fmt::format("cudaGetDeviceCount: {}", cudaGetErrorString(status));
    return report;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (const cudaError_t status = cudaGetDeviceProperties(&prop, i); status != cudaSuccess) {
      report.error = fmt::format("cudaGetDeviceProperties({}): {}", i, cudaGetErrorString(status));
      continue;
    }
    char bus[32] = {};
    cudaDeviceGetPCIBusId(bus, sizeof(bus), i);
    report.gpus.push_back({i, prop.name, bus, prop.totalGlobalMem, prop.major, prop.minor});
  }
  report.peer_access.assign(static_cast<size_t>(count), std::vector<bool>(static_cast<size_t>(count), false));
  for (int i = 0; i < count; ++i) {
    for (int j = 0; j < count; ++j) {
      int can = i == j ? 1 : 0;
      if (i != j) cudaDeviceCanAccessPeer(&can, i, j);
      report.peer_access[static_cast<size_t>(i)][static_cast<size_t>(j)] = can != 0;
    }
  }
  return report;
}

#else

DeviceReport local_device_report() {
  DeviceReport report;
  report.error = "built without CUDA";
  return report;
}

#endif

}  // namespace tpserve::parallel
