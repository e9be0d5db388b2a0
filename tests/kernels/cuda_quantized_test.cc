// The CUDA quantized linear (bf16 and fp16) against its CPU twin, cpu::quantized_linear, on the same
// matrices: every path — the fused kernel at 1-64 tokens (one and several K splits, tails of rows
// and tokens, 4 and 8 bits, GPTQ act-order sorted at load), and the dequantizing path for larger
// batches and for the matrices the fused kernel does not take (group sizes that are not a multiple
// of 32, an irregular group index, widths that are not whole words).
//
// The matrices' scales and mins (or integer zero points) are exact in both compute dtypes, and x is rounded to the compute
// dtype before the CPU sees it, so the two differ only in the GPU's rounding of each weight to the
// compute dtype (as any bf16 / fp16 model holds its weights), the summation order and the output's
// rounding: within cuda_ops_test.cc's tolerances, 1e-2 (bf16) and 2e-3 (fp16) of the output's RMS.
// A layout or group mistake is off by O(1).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda_backend.h"
#include "kernels/ops.h"
#include "kernels/quantized_device.h"
#include "kernels/quantized_host.h"
#include "runtime/model/device_buffer.h"

namespace tpserve::kernels {
namespace {

enum class Groups { kColumns, kActOrder, kIrregular };

struct Case {
  int bits;
  int64_t rows, cols, group_size;
  Groups groups;
  std::string name;
  bool zero_points = false;  // mins -scale * integer zeros (GPTQ / AWQ), kept as zeros on the GPU
};

// Scales k / 4096 and mins -u / 2^e with k, u < 128: 7 significant bits, exact in bf16 and fp16.
QuantizedHostMatrix make_matrix(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<uint32_t> code(0, (1u << c.bits) - 1);
  std::uniform_int_distribution<int> scale(8, 127);
  const int64_t groups = (c.cols + c.group_size - 1) / c.group_size;
  QuantizedHostMatrix m(c.bits, c.rows, c.cols, c.group_size, groups);
  for (int64_t r = 0; r < c.rows; ++r) {
    for (int64_t k = 0; k < c.cols; ++k) m.set_code(r, k, code(rng));
    for (int64_t g = 0; g < groups; ++g) {
      // min ~ -scale * 2^(bits-1) (codes centred on zero), drawn on its own: u / 2^e, u < 128.
      const float s = static_cast<float>(scale(rng)) / 4096.0f;
      const float u = static_cast<float>(scale(rng));
      if (c.zero_points) {
        m.set_scale_zero(r, g, s, static_cast<float>(code(rng)));  // -s * z: exact in float32
      } else {
        m.set_scale_min(r, g, s, -u / (c.bits == 4 ? 512.0f : 32.0f));
      }
    }
  }
  if (c.groups == Groups::kActOrder) {  // GPTQ desc_act: g_idx[perm[i]] = i / group_size
    std::vector<int32_t> perm(static_cast<size_t>(c.cols));
    for (size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<int32_t>(i);
    std::shuffle(perm.begin(), perm.end(), rng);
    std::vector<int32_t> group_of(perm.size());
    for (size_t i = 0; i < perm.size(); ++i) {
      group_of[static_cast<size_t>(perm[i])] = static_cast<int32_t>(i / c.group_size);
    }
    m.set_group_index(std::move(group_of));
  } else if (c.groups == Groups::kIrregular) {  // any group for any column
    std::uniform_int_distribution<int32_t> any(0, static_cast<int32_t>(groups - 1));
    std::vector<int32_t> group_of(static_cast<size_t>(c.cols));
    for (int32_t& g : group_of) g = any(rng);
    m.set_group_index(std::move(group_of));
  }
  return m;
}

class CudaQuantized : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) {
      GTEST_SKIP() << "no CUDA device: CUDA quantized linear tests need a GPU (or CUDA is not "
                      "built in)";
    }
    backend_ = make_cuda_backend(0, GetParam());
  }
  float tolerance() const { return GetParam() == DType::kBF16 ? 1e-2f : 2e-3f; }

  // Uploads v, returns it as the device holds it (rounded to the compute dtype).
  std::vector<float> round_trip(runtime::DeviceBuffer& buffer, const std::vector<float>& v) {
    backend_->upload_f32(buffer.data(), v.data(), static_cast<int64_t>(v.size()));
    std::vector<float> rounded(v.size());
    backend_->download_f32(rounded.data(), buffer.data(), static_cast<int64_t>(v.size()));
    return rounded;
  }

  void check(const Case& c, const std::vector<int>& token_counts) {
    const QuantizedHostMatrix host = make_matrix(c, 1234u + static_cast<uint32_t>(c.cols));
    const DeviceQuantizedMatrix device(*backend_, host);
    const QuantizedMatrix cpu_view = host.view();
    const size_t element = dtype_size(GetParam());
    std::mt19937 rng(99);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (int m : token_counts) {
      const bool with_bias = m % 2 == 1;
      std::vector<float> x(static_cast<size_t>(m * c.cols)), bias(static_cast<size_t>(c.rows));
      for (float& v : x) v = normal(rng);
      for (float& v : bias) v = normal(rng);
      runtime::DeviceBuffer x_dev(*backend_, x.size() * element);
      runtime::DeviceBuffer bias_dev(*backend_, bias.size() * element);
      runtime::DeviceBuffer out_dev(*backend_, static_cast<size_t>(m * c.rows) * element);
      x = round_trip(x_dev, x);
      bias = round_trip(bias_dev, bias);
      std::vector<float> expected(static_cast<size_t>(m * c.rows));
      cpu::quantized_linear(x.data(), cpu_view, with_bias ? bias.data() : nullptr, m,
                            expected.data());
      backend_->quantized_linear(x_dev.data(), device.matrix(),
                                 with_bias ? bias_dev.data() : nullptr, m, out_dev.data());
      std::vector<float> got(expected.size());
      backend_->download_f32(got.data(), out_dev.data(), static_cast<int64_t>(got.size()));
      double square = 0;
      for (float v : expected) square += static_cast<double>(v) * v;
      const float rms = static_cast<float>(std::sqrt(square / expected.size()));
      int bad = 0;
      float worst = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        const float error = std::abs(got[i] - expected[i]);
        worst = std::max(worst, error / rms);
        if (!(error <= tolerance() * (rms + std::abs(expected[i])))) ++bad;
      }
      EXPECT_EQ(bad, 0) << c.name << " m=" << m << ": worst error " << worst << " of the RMS "
                        << rms;
    }
  }

  std::unique_ptr<Backend> backend_;
};

// Token counts: the fused kernel's tiles of 8 / 16 / 32 tokens with tails, two launches (33-64),
// and the dequantizing path (65+).
const std::vector<int> kTokens = {1, 3, 8, 9, 16, 17, 31, 32, 40, 64, 65, 130};

TEST_P(CudaQuantized, FusedKernelShapes) {
  const Case cases[] = {
      {4, 96, 256, 128, Groups::kColumns, "4-bit g128, 3 row blocks"},
      {4, 70, 512, 32, Groups::kColumns, "4-bit g32, a row tail"},
      {8, 40, 256, 64, Groups::kColumns, "8-bit g64"},
      {4, 33, 384, 384, Groups::kColumns, "4-bit one group per row"},
      {4, 64, 4096, 128, Groups::kColumns, "4-bit, K split over blocks"},
      {8, 48, 3072, 32, Groups::kColumns, "8-bit, K split over blocks"},
      {4, 48, 256, 32, Groups::kActOrder, "4-bit act-order"},
      {8, 40, 2048, 128, Groups::kActOrder, "8-bit act-order, K split"},
      {4, 96, 2048, 128, Groups::kColumns, "4-bit zero points, K split", true},
      {8, 40, 256, 64, Groups::kColumns, "8-bit zero points", true},
      {4, 48, 1024, 32, Groups::kActOrder, "4-bit act-order zero points", true},
  };
  for (const Case& c : cases) check(c, kTokens);
}

TEST_P(CudaQuantized, DequantizingPathShapes) {
  const Case cases[] = {
      {4, 5, 74, 18, Groups::kColumns, "4-bit, width not whole words"},
      {4, 7, 80, 16, Groups::kColumns, "4-bit g16 (paired, not fused)"},
      {8, 6, 90, 30, Groups::kColumns, "8-bit g30"},
      {4, 9, 64, 32, Groups::kIrregular, "4-bit irregular group index"},
      {8, 4, 96, 32, Groups::kIrregular, "8-bit irregular group index"},
      {4, 3, 70, 14, Groups::kActOrder, "act-order, width not whole words"},
      {4, 5, 74, 18, Groups::kColumns, "4-bit zero points, not whole words", true},
      {8, 4, 96, 32, Groups::kIrregular, "8-bit zero points, irregular groups", true},
  };
  for (const Case& c : cases) check(c, {1, 4, 33, 70});
}

// A decode-sized layer whose outputs span many row blocks and whose rows are read by 8 warps each.
TEST_P(CudaQuantized, LargeLayer) {
  check({4, 1024, 2048, 128, Groups::kColumns, "4-bit 1024x2048"}, {1, 7, 16, 64, 200});
  check({8, 512, 1536, 32, Groups::kColumns, "8-bit 512x1536"}, {1, 16, 200});
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaQuantized, ::testing::Values(DType::kBF16, DType::kF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace tpserve::kernels
