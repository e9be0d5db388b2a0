// Device-side helpers shared by the kernels: the two compute dtypes, their float conversions
// (round to nearest even, as torch casts), warp reductions and the dtype dispatch.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/dtype.h"
#include "kernels/cuda/cuda_check.h"

namespace tpserve::kernels::cuda {

__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}

__device__ __forceinline__ float warp_sum(float x) {
  for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
  for (int offset = 16; offset > 0; offset /= 2)
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  return x;
}

inline unsigned blocks_for(int64_t n, int threads, int64_t cap = 65535LL * 32) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks < cap ? blocks : cap);
}

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace tpserve::kernels::cuda

// Runs the statement with T bound to the device type of `dtype`.
#define TPSERVE_DISPATCH_DTYPE(dtype, T, ...)                   \
  switch (dtype) {                                              \
    case ::tpserve::DType::kBF16: {                             \
      using T = __nv_bfloat16;                                  \
      __VA_ARGS__;                                              \
      break;                                                    \
    }                                                           \
    case ::tpserve::DType::kF16: {                              \
      using T = __half;                                         \
      __VA_ARGS__;                                              \
      break;                                                    \
    }                                                           \
    default:                                                    \
      ::tpserve::kernels::cuda::raise_unsupported_dtype(dtype); \
  }
