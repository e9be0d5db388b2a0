// Device side of the int8 KV cache (kv_int8.h): the quantization of one head, shared by
// cache_write_int8 (kv_int8.cu) and rope_cache_write_int8 (rope_cache_write.cu).
#pragma once

#include <cstdint>

#include "kernels/cuda/cuda_types.cuh"

namespace tpserve::kernels::cuda {

// One warp (all 32 lanes) quantizes the n compute-dtype values at x into codes[0..n) and *scale,
// exactly as kernels/cpu/kv_int8.cc's quantize_int8 does on their float32 values: max|x| (fabsf,
// fmaxf: exact), scale = max / 127 and x / scale (IEEE division: this target is built without
// --use_fast_math, so nvcc keeps '/' correctly rounded), rintf (round half to even, as
// std::nearbyint in the default mode), clamp to [-127, 127]. A zero head: scale 0, codes 0.
template <typename T>
__device__ __forceinline__ void quantize_head_int8(const T* x, int n, int8_t* codes, float* scale,
                                                   int lane) {
  float max_abs = 0.0f;
  for (int d = lane; d < n; d += 32) max_abs = fmaxf(max_abs, fabsf(to_float(x[d])));
  max_abs = warp_max(max_abs);
  const float s = max_abs / 127.0f;
  for (int d = lane; d < n; d += 32) {
    const float code =
        max_abs == 0.0f ? 0.0f : fminf(fmaxf(rintf(to_float(x[d]) / s), -127.0f), 127.0f);
    codes[d] = static_cast<int8_t>(code);
  }
  if (lane == 0) *scale = max_abs == 0.0f ? 0.0f : s;
}

}  // namespace tpserve::kernels::cuda
