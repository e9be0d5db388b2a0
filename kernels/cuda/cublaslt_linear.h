// y[M,N] = x[M,K] W[N,K]^T (+ bias[N]) through cuBLASLt, bias fused into the epilogue.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <tuple>

#include "common/dtype.h"

namespace tpserve::kernels::cuda {

class CublasLtLinear {
 public:
  // The workspace (device memory, workspace_bytes) is owned by the caller and outlives this.
  CublasLtLinear(DType dtype, cudaStream_t stream, void* workspace, size_t workspace_bytes);
  ~CublasLtLinear();
  CublasLtLinear(const CublasLtLinear&) = delete;
  CublasLtLinear& operator=(const CublasLtLinear&) = delete;

  // out_stride: elements between rows of out (0: n). A larger stride writes n columns of a wider
  // row-major matrix (the quantized path's dequantized row chunks).
  void run(const void* x, const void* weight, const void* bias, int m, int64_t n, int64_t k,
           void* out, int64_t out_stride = 0);

 private:
  // One shape's descriptors and chosen algorithm, built on first use (the heuristic query costs
  // tens of microseconds; a decode step calls the same few shapes every time).
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t weight_layout = nullptr;
    cublasLtMatrixLayout_t x_layout = nullptr;
    cublasLtMatrixLayout_t out_layout = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  // (m, n, k, has bias, alignment of x, weight, out, bias, out stride): the alignments steer the
  // heuristic.
  using Key = std::tuple<int, int64_t, int64_t, bool, int, int, int, int, int64_t>;

  Plan& plan_for(const Key& key);
  static void destroy(Plan& plan);

  DType dtype_;
  cudaStream_t stream_;
  void* workspace_;
  size_t workspace_bytes_;
  cublasLtHandle_t handle_ = nullptr;
  std::map<Key, Plan> plans_;
};

}  // namespace tpserve::kernels::cuda
