// Checkpoint weights converted on the device from the dtype they are stored in to the compute
// dtype, so a load sends the file's bytes over the bus instead of a float32 copy of them. The value
// path is the one upload_f32 took before (file dtype -> exact float32 -> from_float<T>, round to
// nearest even), so every finite value and infinity lands bit for bit as before; tested against
// the CPU's widening in tests/kernels/cuda_ops_test.cc. One thread per element, grid-stride.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/error.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_types.cuh"

namespace tpserve::kernels::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float widen(float x) { return x; }
__device__ __forceinline__ float widen(__half x) { return __half2float(x); }
__device__ __forceinline__ float widen(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename S, typename D>
__global__ void convert_weights_kernel(const S* src, int64_t n, D* dst) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[i] = from_float<D>(widen(src[i]));
  }
}

template <typename S>
void launch_from(DType dst_dtype, cudaStream_t stream, const S* src, int64_t n, void* dst) {
  TPSERVE_DISPATCH_DTYPE(dst_dtype, D, {
    convert_weights_kernel<S, D>
        <<<blocks_for(n, kThreads), kThreads, 0, stream>>>(src, n, static_cast<D*>(dst));
  });
  TPSERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_convert_weights(DType src_dtype, DType dst_dtype, cudaStream_t stream, const void* src,
                            int64_t n, void* dst) {
  if (n <= 0) return;
  switch (src_dtype) {
    case DType::kF32:
      launch_from(dst_dtype, stream, static_cast<const float*>(src), n, dst);
      return;
    case DType::kF16:
      launch_from(dst_dtype, stream, static_cast<const __half*>(src), n, dst);
      return;
    case DType::kBF16:
      launch_from(dst_dtype, stream, static_cast<const __nv_bfloat16*>(src), n, dst);
      return;
    default:
      raise(ErrorCode::kInvalidArgument, "cuda convert: {} is not a weight dtype",
            dtype_name(src_dtype));
  }
}

}  // namespace tpserve::kernels::cuda
