// scatter_add_rows, the mixture-of-experts combine: the CPU reference on a hand-computed case, and
// the CUDA kernel (bf16, fp16) against the CPU twin on the same rounded inputs (skipped without a
// device, as in cuda_ops_test.cc).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "kernels/cuda_backend.h"
#include "kernels/ops.h"

namespace tpserve::kernels {
namespace {

TEST(MoeOpsCpu, ScatterAddRowsAddsWeightedRowsAtTheirDestinations) {
  auto cpu = make_cpu_backend();
  // dst rows 0..3 of width 2; src rows go to dst rows 2 and 0 with weights 0.5 and -2.
  std::vector<float> dst = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<float> src = {10, 20, 30, 40};
  const std::vector<int32_t> rows = {2, 0};
  const std::vector<float> weights = {0.5f, -2.0f};
  cpu->scatter_add_rows(src.data(), rows.data(), weights.data(), 2, 2, dst.data());
  EXPECT_EQ(dst, (std::vector<float>{1 - 60, 2 - 80, 3, 4, 5 + 5, 6 + 10, 7, 8}));
}

class MoeOpsCuda : public ::testing::TestWithParam<DType> {};

TEST_P(MoeOpsCuda, ScatterAddRowsMatchesTheCpuTwin) {
  if (cuda_device_count() == 0) {
    GTEST_SKIP() << "no CUDA device: CUDA backend tests need a GPU (or CUDA is not built in)";
  }
  auto gpu = make_cuda_backend(0, GetParam());
  auto cpu = make_cpu_backend();
  const size_t element = dtype_size(GetParam());
  const int dst_rows = 37, num_rows = 23;
  const int64_t cols = 1000;  // not a multiple of the CTA width
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> dst(dst_rows * cols), src(num_rows * cols), weights(num_rows);
  for (float& x : dst) x = normal(rng);
  for (float& x : src) x = normal(rng);
  for (float& x : weights) x = std::abs(normal(rng));
  std::vector<int32_t> rows(dst_rows);
  for (int i = 0; i < dst_rows; ++i) rows[i] = (i * 7) % dst_rows;  // a permutation
  rows.resize(num_rows);

  // Round the inputs to the compute dtype first, so both sides see the same values.
  void* dst_gpu = gpu->allocate(dst.size() * element);
  void* src_gpu = gpu->allocate(src.size() * element);
  void* rows_gpu = gpu->allocate(rows.size() * sizeof(int32_t));
  void* weights_gpu = gpu->allocate(weights.size() * sizeof(float));
  gpu->upload_f32(dst_gpu, dst.data(), static_cast<int64_t>(dst.size()));
  gpu->upload_f32(src_gpu, src.data(), static_cast<int64_t>(src.size()));
  gpu->download_f32(dst.data(), dst_gpu, static_cast<int64_t>(dst.size()));
  gpu->download_f32(src.data(), src_gpu, static_cast<int64_t>(src.size()));
  gpu->copy_to_device(rows_gpu, rows.data(), rows.size() * sizeof(int32_t));
  gpu->copy_to_device(weights_gpu, weights.data(), weights.size() * sizeof(float));

  gpu->scatter_add_rows(src_gpu, static_cast<const int32_t*>(rows_gpu),
                        static_cast<const float*>(weights_gpu), num_rows, cols, dst_gpu);
  cpu->scatter_add_rows(src.data(), rows.data(), weights.data(), num_rows, cols, dst.data());
  std::vector<float> out(dst.size());
  gpu->download_f32(out.data(), dst_gpu, static_cast<int64_t>(out.size()));
  // One rounding of each output to the compute dtype.
  const float tolerance = GetParam() == DType::kBF16 ? 1e-2f : 2e-3f;
  int misses = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (std::abs(out[i] - dst[i]) > tolerance * (std::abs(dst[i]) + 1.0f) && ++misses <= 5) {
      ADD_FAILURE() << "element " << i << " gpu " << out[i] << " cpu " << dst[i];
    }
  }
  EXPECT_EQ(misses, 0);
  for (void* p : {dst_gpu, src_gpu, rows_gpu, weights_gpu}) gpu->release(p);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, MoeOpsCuda, ::testing::Values(DType::kBF16, DType::kF16),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(dtype_name(info.param));
                         });

}  // namespace
}  // namespace tpserve::kernels
