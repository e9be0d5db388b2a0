// Mixture-of-experts row ops in bf16/fp16 with float32 math; twin of kernels/cpu/moe.cc.
// scatter_add_rows is memory-bound: one CTA per source row, threads striding over its columns.
// Rows are distinct within one call (one expert sees a token at most once), so no two CTAs write
// the same destination row and no atomics are needed.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_types.cuh"

namespace tpserve::kernels::cuda {

namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void scatter_add_rows_kernel(const T* src, const int32_t* rows,
                                        const float* row_weights, int64_t cols, T* dst) {
  const int i = blockIdx.x;
  const float weight = row_weights[i];
  const T* from = src + static_cast<int64_t>(i) * cols;
  T* to = dst + static_cast<int64_t>(rows[i]) * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    to[c] = from_float<T>(to_float(to[c]) + weight * to_float(from[c]));
  }
}

}  // namespace

void launch_scatter_add_rows(DType dtype, cudaStream_t stream, const void* src, const int32_t* rows,
                             const float* row_weights, int num_rows, int64_t cols, void* dst) {
  if (num_rows <= 0 || cols <= 0) return;
  TPSERVE_DISPATCH_DTYPE(dtype, T, {
    scatter_add_rows_kernel<T><<<num_rows, kThreads, 0, stream>>>(
        static_cast<const T*>(src), rows, row_weights, cols, static_cast<T*>(dst));
  });
  TPSERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace tpserve::kernels::cuda
