// cuBLASLt is column-major; our tensors are row-major. A row-major [R, C] matrix is a column-major
// [C, R] one with the same bytes, so y[M,N] = x[M,K] W[N,K]^T becomes, column-major,
//   y_cm[N,M] = W_cm[K,N]^T x_cm[K,M]:  A = W (stored K x N, ld K, op T), B = x (K x M, ld K,
//   op N), D = y (N x M, ld N). The bias has one entry per row of D (= per output feature), which
//   is exactly what CUBLASLT_EPILOGUE_BIAS broadcasts. Compute and scale type float32.
#include "kernels/cuda/cublaslt_linear.h"

#include <cstdint>

#include "common/error.h"
#include "kernels/cuda/cuda_check.h"

namespace tpserve::kernels::cuda {

namespace {

constexpr size_t kMaxCachedPlans = 4096;

// Largest power of two (<= 256, cuBLASLt's default assumption) dividing the address.
int alignment_of(const void* ptr) {
  const auto address = reinterpret_cast<uintptr_t>(ptr);
  int alignment = 256;
  while (alignment > 1 && address % alignment != 0) alignment /= 2;
  return alignment;
}

cudaDataType_t cuda_data_type(DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return CUDA_R_16BF;
    case DType::kF16:
      return CUDA_R_16F;
    default:
      raise_unsupported_dtype(dtype);
  }
}

}  // namespace

CublasLtLinear::CublasLtLinear(DType dtype, cudaStream_t stream, void* workspace,
                               size_t workspace_bytes)
    : dtype_(dtype), stream_(stream), workspace_(workspace), workspace_bytes_(workspace_bytes) {
  cuda_data_type(dtype);  // raises on an unsupported dtype before anything is created
  TPSERVE_CUBLAS_CHECK(cublasLtCreate(&handle_));
}

CublasLtLinear::~CublasLtLinear() {
  for (auto& [key, plan] : plans_) destroy(plan);
  if (handle_ != nullptr) cublasLtDestroy(handle_);
}

void CublasLtLinear::destroy(Plan& plan) {
  // Teardown: errors here cannot be acted on, and a destructor must not throw.
  if (plan.out_layout != nullptr) cublasLtMatrixLayoutDestroy(plan.out_layout);
  if (plan.x_layout != nullptr) cublasLtMatrixLayoutDestroy(plan.x_layout);
  if (plan.weight_layout != nullptr) cublasLtMatrixLayoutDestroy(plan.weight_layout);
  if (plan.desc != nullptr) cublasLtMatmulDescDestroy(plan.desc);
  plan = Plan{};
}

CublasLtLinear::Plan& CublasLtLinear::plan_for(const Key& key) {
  auto found = plans_.find(key);
  if (found != plans_.end()) return found->second;
  const auto [m, n, k, has_bias, align_x, align_weight, align_out, align_bias, out_stride] = key;
  (void)align_bias;
  const cudaDataType_t type = cuda_data_type(dtype_);
  Plan plan;
  cublasLtMatmulPreference_t preference = nullptr;
  try {
    TPSERVE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t transpose = CUBLAS_OP_T, keep = CUBLAS_OP_N;
    TPSERVE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                        &transpose, sizeof(transpose)));
    TPSERVE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                        &keep, sizeof(keep)));
    const cublasLtEpilogue_t epilogue =
        has_bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    TPSERVE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                        &epilogue, sizeof(epilogue)));
    TPSERVE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.weight_layout, type, k, n, k));
    TPSERVE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.x_layout, type, k, m, k));
    TPSERVE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.out_layout, type, n, m, out_stride));

    TPSERVE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
    const uint64_t workspace = workspace_bytes_;
    TPSERVE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof(workspace)));
    const uint32_t a_align = align_weight, b_align = align_x, d_align = align_out;
    TPSERVE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &a_align, sizeof(a_align)));
    TPSERVE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &b_align, sizeof(b_align)));
    TPSERVE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &d_align, sizeof(d_align)));
    TPSERVE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &d_align, sizeof(d_align)));

    cublasLtMatmulHeuristicResult_t result{};
    int returned = 0;
    TPSERVE_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(
        handle_, plan.desc, plan.weight_layout, plan.x_layout, plan.out_layout, plan.out_layout,
        preference, 1, &result, &returned));
    if (returned == 0) {
      raise(ErrorCode::kUnimplemented,
            "cuBLASLt has no algorithm for linear m={} n={} k={} (bias {}, {})", m, n, k, has_bias,
            dtype_name(dtype_));
    }
    plan.algo = result.algo;
    cublasLtMatmulPreferenceDestroy(preference);
  } catch (...) {
    if (preference != nullptr) cublasLtMatmulPreferenceDestroy(preference);
    destroy(plan);
    throw;
  }
  if (plans_.size() >= kMaxCachedPlans) {
    // Prefill lengths make m take many values over a server's life: bound the cache by starting
    // over (a plan is only read inside cublasLtMatmul's host call, so none is in use here).
    for (auto& [cached_key, cached] : plans_) destroy(cached);
    plans_.clear();
  }
  return plans_.emplace(key, plan).first->second;
}

void CublasLtLinear::run(const void* x, const void* weight, const void* bias, int m, int64_t n,
                         int64_t k, void* out, int64_t out_stride) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) raise(ErrorCode::kInvalidArgument, "cuda linear: k = {} (m {}, n {})", k, m, n);
  if (out_stride == 0) out_stride = n;
  if (out_stride < n) {
    raise(ErrorCode::kInvalidArgument, "cuda linear: out stride {} < n {}", out_stride, n);
  }
  const Key key{m,
                n,
                k,
                bias != nullptr,
                alignment_of(x),
                alignment_of(weight),
                alignment_of(out),
                bias != nullptr ? alignment_of(bias) : 0,
                out_stride};
  Plan& plan = plan_for(key);
  if (bias != nullptr) {
    TPSERVE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  const float alpha = 1.0f, beta = 0.0f;
  TPSERVE_CUBLAS_CHECK(cublasLtMatmul(
      handle_, plan.desc, &alpha, weight, plan.weight_layout, x, plan.x_layout, &beta, out,
      plan.out_layout, out, plan.out_layout, &plan.algo, workspace_, workspace_bytes_, stream_));
}

}  // namespace tpserve::kernels::cuda
