// The CUDA backend of the op set (kernels/ops.h): bf16 or fp16 activations and weights with float32
// accumulation, GEMM through cuBLASLt, one stream per backend. This header compiles in every
// build; without CUDA built in, cuda_device_count() is 0 and make_cuda_backend raises.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "kernels/ops.h"

namespace tpserve::kernels {

// Number of usable CUDA devices: 0 when built without CUDA, or when no driver or device is
// present (never throws, never aborts).
int cuda_device_count();

// A backend on `device` computing in `dtype` (DType::kBF16 or DType::kF16; anything else raises
// tpserve::Error naming the dtype). Raises "built without CUDA" in builds without CUDA.
std::unique_ptr<Backend> make_cuda_backend(int device, DType dtype);

// Device-to-device cudaMemcpy bandwidth on `device` in GB/s (1e9 bytes/s), median of several
// timed copies of `bytes`. Each copy counts 2 * bytes moved (read once + written once), the same
// accounting as a memory-bound kernel's roofline. Raises in builds without CUDA.
double cuda_copy_bandwidth_gbps(int device, size_t bytes);

// GPU seconds per call of body(i), i = 0 .. calls - 1, each enqueuing ops on `backend` (a CUDA
// backend): the calls are captured once into a CUDA graph and the graph is replayed, so the time
// is the kernels' own, without the host's launch costs. body must allocate nothing while captured
// (call it once beforehand to size the backend's scratch). Raises in builds without CUDA.
double cuda_graph_seconds(Backend& backend, int calls, const std::function<void(int)>& body);

}  // namespace tpserve::kernels
