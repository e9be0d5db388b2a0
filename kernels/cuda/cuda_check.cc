// The error paths of cuda_check.h, kept out of line so the checks inline to one compare.
#include "kernels/cuda/cuda_check.h"

#include "common/error.h"

namespace tpserve::kernels::cuda {

namespace {

int current_device() {
  int device = -1;
  if (cudaGetDevice(&device) != cudaSuccess) device = -1;
  return device;
}

}  // namespace

void raise_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  const ErrorCode code =
      status == cudaErrorMemoryAllocation ? ErrorCode::kResourceExhausted : ErrorCode::kInternal;
  raise(code, "CUDA error {} ({}) in {} at {}:{} on device {}", cudaGetErrorName(status),
        cudaGetErrorString(status), call, file, line, current_device());
}

void raise_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  const ErrorCode code =
      status == CUBLAS_STATUS_ALLOC_FAILED ? ErrorCode::kResourceExhausted : ErrorCode::kInternal;
  raise(code, "cuBLASLt error {} ({}) in {} at {}:{} on device {}", cublasLtGetStatusName(status),
        cublasLtGetStatusString(status), call, file, line, current_device());
}

void raise_unsupported_dtype(DType dtype) {
  raise(ErrorCode::kInvalidArgument,
        "cuda backend: unsupported compute dtype {} (want BF16 or F16)", dtype_name(dtype));
}

}  // namespace tpserve::kernels::cuda
