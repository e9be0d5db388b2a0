// Checking macros for every CUDA runtime and cuBLASLt call: a failure raises tpserve::Error naming
// the call, file:line and the current device. Kernel launches are checked with
// TPSERVE_CUDA_CHECK_LAUNCH() (cudaGetLastError) right after the <<<>>>.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "common/dtype.h"

namespace tpserve::kernels::cuda {

[[noreturn]] void raise_cuda_error(cudaError_t status, const char* call, const char* file,
                                   int line);
[[noreturn]] void raise_cublas_error(cublasStatus_t status, const char* call, const char* file,
                                     int line);

// The kernels run in bf16 or fp16 only; other dtypes raise kInvalidArgument naming the dtype.
[[noreturn]] void raise_unsupported_dtype(DType dtype);

inline void check_cuda(cudaError_t status, const char* call, const char* file, int line) {
  if (status != cudaSuccess) raise_cuda_error(status, call, file, line);
}
inline void check_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS) raise_cublas_error(status, call, file, line);
}

}  // namespace tpserve::kernels::cuda

#define TPSERVE_CUDA_CHECK(call) \
  ::tpserve::kernels::cuda::check_cuda((call), #call, __FILE__, __LINE__)
#define TPSERVE_CUBLAS_CHECK(call) \
  ::tpserve::kernels::cuda::check_cublas((call), #call, __FILE__, __LINE__)
#define TPSERVE_CUDA_CHECK_LAUNCH() \
  ::tpserve::kernels::cuda::check_cuda(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
