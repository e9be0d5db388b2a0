// RMSNorm, alone and fused with the residual add before it; twins of rms_norm and add_rms_norm in
// kernels/cpu/elementwise.cc.
//
// At decode a norm is one row of a few thousand elements: the kernel is latency-bound, not
// bandwidth-bound, so the row is read once, with 16-byte loads, by as many threads as it has
// 8-element vectors (up to 1024; beyond that each thread keeps 2 or 4), and it stays in
// registers between the two halves of the op: sum of squares, CTA-wide reduction, scale and
// write. The weight is loaded alongside x, before the reduction, so its latency overlaps it.
// One CTA per row. Rows whose width or pointers do not allow 16-byte vectors take a scalar
// kernel with the same math.
//
// Rounding follows the unfused ops exactly: x + y is rounded to the compute dtype (as `add`
// stores it) before it is squared, and the norm rounds x * inv_rms to the dtype before the
// weight multiplies it, as transformers' LlamaRMSNorm does (hidden_states.to(input_dtype)).
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_types.cuh"

namespace tpserve::kernels::cuda {

namespace {

constexpr int kMaxThreads = 1024;
constexpr int kScalarThreads = 256;
// Vectors per thread: rows up to 4 * 8 * 1024 = 32768 elements stay in registers (8 would spill
// under the 64 registers that 1024 threads leave each); wider rows take the scalar kernel.
constexpr int kMaxVecs = 4;

// Sum over the CTA (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
// `shared` holds one float per warp.
__device__ float block_sum(float x, float* shared) {
  x = warp_sum(x);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  const int warps = blockDim.x / 32;
  float total = 0.0f;
  for (int w = 0; w < warps; ++w) total += shared[w];
  return total;
}

// The 8 elements of a 16-byte vector.
template <typename T>
__device__ __forceinline__ T* elements(uint4& v) {
  return reinterpret_cast<T*>(&v);
}

// Row blockIdx.x: x += y when kAdd (stored back), then out = rms_norm(x). Vector i of the row is
// owned by thread i % blockDim.x in both halves, so out may alias x (plain rms_norm in place).
template <typename T, bool kAdd, int kVecs>
__global__ void __launch_bounds__(kMaxThreads)
    rms_norm_vec_kernel(T* x, const T* y, const T* weight, int64_t cols, float eps, T* out) {
  __shared__ float partial[kMaxThreads / 32];
  const int64_t offset = static_cast<int64_t>(blockIdx.x) * cols;
  uint4* x_row = reinterpret_cast<uint4*>(x + offset);
  const uint4* w_row = reinterpret_cast<const uint4*>(weight);
  const int vectors = static_cast<int>(cols / 8);
  uint4 xv[kVecs], wv[kVecs];
  float sum_squares = 0.0f;
#pragma unroll
  for (int k = 0; k < kVecs; ++k) {
    const int i = threadIdx.x + k * blockDim.x;
    if (i < vectors) {
      xv[k] = x_row[i];
      wv[k] = w_row[i];
      T* xe = elements<T>(xv[k]);
      if constexpr (kAdd) {
        uint4 yv = reinterpret_cast<const uint4*>(y + offset)[i];
        const T* ye = elements<T>(yv);
#pragma unroll
        for (int u = 0; u < 8; ++u) xe[u] = from_float<T>(to_float(xe[u]) + to_float(ye[u]));
        x_row[i] = xv[k];
      }
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        const float v = to_float(xe[u]);
        sum_squares += v * v;
      }
    }
  }
  const float total = block_sum(sum_squares, partial);
  const float inv_rms = rsqrtf(total / static_cast<float>(cols) + eps);
  uint4* out_row = reinterpret_cast<uint4*>(out + offset);
#pragma unroll
  for (int k = 0; k < kVecs; ++k) {
    const int i = threadIdx.x + k * blockDim.x;
    if (i < vectors) {
      const T* xe = elements<T>(xv[k]);
      const T* we = elements<T>(wv[k]);
      uint4 o;
      T* oe = elements<T>(o);
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        const float normed = to_float(from_float<T>(to_float(xe[u]) * inv_rms));
        oe[u] = from_float<T>(to_float(we[u]) * normed);
      }
      out_row[i] = o;
    }
  }
}

// Any width and alignment. Element c is owned by one thread in both passes (the second re-reads
// what the first stored), so out may alias x.
template <typename T, bool kAdd>
__global__ void __launch_bounds__(kScalarThreads)
    rms_norm_scalar_kernel(T* x, const T* y, const T* weight, int64_t cols, float eps, T* out) {
  __shared__ float partial[kScalarThreads / 32];
  const int64_t offset = static_cast<int64_t>(blockIdx.x) * cols;
  T* row = x + offset;
  float sum_squares = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    T value = row[c];
    if constexpr (kAdd) {
      value = from_float<T>(to_float(value) + to_float(y[offset + c]));
      row[c] = value;
    }
    const float v = to_float(value);
    sum_squares += v * v;
  }
  const float total = block_sum(sum_squares, partial);
  const float inv_rms = rsqrtf(total / static_cast<float>(cols) + eps);
  T* dst = out + offset;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float normed = to_float(from_float<T>(to_float(row[c]) * inv_rms));
    dst[c] = from_float<T>(to_float(weight[c]) * normed);
  }
}

template <typename T, bool kAdd>
void launch_norm(cudaStream_t stream, T* x, const T* y, const T* weight, int rows, int64_t cols,
                 float eps, T* out) {
  const int64_t vectors = cols / 8;
  const bool vec = cols % 8 == 0 && vectors <= int64_t{kMaxVecs} * kMaxThreads && aligned16(x) &&
                   (!kAdd || aligned16(y)) && aligned16(weight) && aligned16(out);
  if (!vec) {
    rms_norm_scalar_kernel<T, kAdd>
        <<<rows, kScalarThreads, 0, stream>>>(x, y, weight, cols, eps, out);
    return;
  }
  int vecs = 1;
  while (static_cast<int64_t>(vecs) * kMaxThreads < vectors) vecs *= 2;
  const int64_t per_thread = (vectors + vecs - 1) / vecs;
  const int threads = static_cast<int>((per_thread + 31) / 32 * 32);
  switch (vecs) {
    case 1:
      rms_norm_vec_kernel<T, kAdd, 1><<<rows, threads, 0, stream>>>(x, y, weight, cols, eps, out);
      break;
    case 2:
      rms_norm_vec_kernel<T, kAdd, 2><<<rows, threads, 0, stream>>>(x, y, weight, cols, eps, out);
      break;
    default:  // kMaxVecs
      rms_norm_vec_kernel<T, kAdd, kMaxVecs>
          <<<rows, threads, 0, stream>>>(x, y, weight, cols, eps, out);
      break;
  }
}

}  // namespace

void launch_rms_norm(DType dtype, cudaStream_t stream, const void* x, const void* weight, int rows,
                     int64_t cols, float eps, void* out) {
  if (rows <= 0 || cols <= 0) return;
  TPSERVE_DISPATCH_DTYPE(dtype, T, {
    // x is only read when kAdd is false; the kernel takes it non-const for the fused case.
    launch_norm<T, false>(stream, const_cast<T*>(static_cast<const T*>(x)), nullptr,
                          static_cast<const T*>(weight), rows, cols, eps, static_cast<T*>(out));
  });
  TPSERVE_CUDA_CHECK_LAUNCH();
}

void launch_add_rms_norm(DType dtype, cudaStream_t stream, void* x, const void* y,
                         const void* weight, int rows, int64_t cols, float eps, void* out) {
  if (rows <= 0 || cols <= 0) return;
  TPSERVE_DISPATCH_DTYPE(dtype, T, {
    launch_norm<T, true>(stream, static_cast<T*>(x), static_cast<const T*>(y),
                         static_cast<const T*>(weight), rows, cols, eps, static_cast<T*>(out));
  });
  TPSERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace tpserve::kernels::cuda
