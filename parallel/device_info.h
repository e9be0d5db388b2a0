// What a rank can see of its node's GPUs and their software, for `tpserve doctor`. Never throws:
// without CUDA, or without a driver, the report says so in `error`.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace tpserve::parallel {

struct GpuInfo {
  int index = 0;
  std::string name;
  std::string pci_bus_id;
  size_t total_memory = 0;  // bytes
  int sm_major = 0;
  int sm_minor = 0;
};

struct DeviceReport {
  int cuda_runtime_version = 0;  // e.g. 13000; 0: unknown
  int cuda_driver_version = 0;
  int nccl_version = 0;          // e.g. 22803
  std::vector<GpuInfo> gpus;
  // peer_access[i][j]: GPU i can read GPU j's memory directly (NVLink / PCIe P2P).
  std::vector<std::vector<bool>> peer_access;
  std::string error;  // non-empty: why nothing (or not everything) could be read
};

DeviceReport local_device_report();

// "13.0" from 13000; "-" for 0.
std::string cuda_version_text(int version);
// "2.28.3" from 22803; "-" for 0.
std::string nccl_version_text(int version);

}  // namespace tpserve::parallel
