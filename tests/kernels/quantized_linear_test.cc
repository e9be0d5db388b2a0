// The quantized representation and the CPU quantized linear: hand-computed weights, every
// instruction set's dequantization bit for bit against the formula, and the GEMV / tiled GEMM
// against OpenBLAS on the dequantized matrix.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "common/error.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/quantized_kernels.h"
#include "kernels/quantized_host.h"

namespace tpserve::kernels {
namespace {

struct Shape {
  int bits;
  int64_t rows, cols, group_size;
  bool act_order;
};

QuantizedHostMatrix random_matrix(const Shape& s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<uint32_t> code(0, (1u << s.bits) - 1);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  const int64_t groups = (s.cols + s.group_size - 1) / s.group_size;
  QuantizedHostMatrix m(s.bits, s.rows, s.cols, s.group_size, groups);
  for (int64_t r = 0; r < s.rows; ++r) {
    for (int64_t c = 0; c < s.cols; ++c) m.set_code(r, c, code(rng));
    for (int64_t g = 0; g < groups; ++g) {
      m.set_scale_zero(r, g, 0.01f + 0.05f * std::abs(unit(rng)),
                       static_cast<float>(code(rng)));
    }
  }
  if (s.act_order) {  // GPTQ desc_act: each column's group is a permutation's, g_idx[perm[i]] = i / gs
    std::vector<int32_t> perm(static_cast<size_t>(s.cols));
    for (size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<int32_t>(i);
    std::shuffle(perm.begin(), perm.end(), rng);
    std::vector<int32_t> group_of(perm.size());
    for (size_t i = 0; i < perm.size(); ++i) {
      group_of[static_cast<size_t>(perm[i])] = static_cast<int32_t>(i / s.group_size);
    }
    m.set_group_index(std::move(group_of));
  }
  return m;
}

std::vector<float> random_input(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

const Shape kShapes[] = {
    {4, 5, 64, 32, false},   {4, 7, 256, 128, false}, {8, 6, 96, 32, false},
    {4, 3, 128, 128, false},  // one group per row (GPTQ group_size -1)
    {4, 4, 74, 18, false},    // group tails shorter than a vector
    {8, 5, 50, 50, false},    {4, 9, 128, 32, true},  {8, 4, 96, 32, true},
    {4, 3, 70, 14, true},     // act-order with a scalar tail
    // The chunked GEMV (group size and row a multiple of 32): GGUF's blocks at SmolLM2's widths,
    // GPTQ's 128, more groups than a vector of mins, and a row of one group.
    {4, 6, 576, 32, false},   {8, 5, 1536, 32, false}, {4, 4, 512, 128, false},
    {8, 3, 32, 32, false},
};

TEST(QuantizedMatrix, HandComputedWeights) {
  QuantizedHostMatrix m(4, 1, 4, 2, 2);
  m.set_code(0, 0, 3);
  m.set_code(0, 1, 15);
  m.set_code(0, 2, 0);
  m.set_code(0, 3, 9);
  m.set_scale_zero(0, 0, 0.5f, 8.0f);  // GPTQ: 0.5 * (q - 8)
  m.set_scale_min(0, 1, 0.25f, 1.0f);  // GGUF Q4_1: 0.25 * q + 1
  EXPECT_EQ(m.codes()[0], 0xF3);       // column 0 low nibble, column 1 high nibble
  EXPECT_EQ(m.codes()[1], 0x90);
  EXPECT_EQ(m.dequantize(), (std::vector<float>{-2.5f, 3.5f, 1.0f, 3.25f}));
}

TEST(QuantizedMatrix, RefusesShapesNoKernelReads) {
  EXPECT_THROW(QuantizedHostMatrix(3, 1, 8, 8, 1), Error);   // 3 bits
  EXPECT_THROW(QuantizedHostMatrix(4, 1, 7, 7, 1), Error);   // odd 4-bit columns
  EXPECT_THROW(QuantizedHostMatrix(4, 1, 8, 3, 3), Error);   // odd 4-bit group
  EXPECT_THROW(QuantizedHostMatrix(8, 1, 64, 16, 3), Error); // groups do not cover the columns
}

TEST(QuantizedKernels, EveryIsaDequantizesBitForBit) {
  for (cpu::Isa isa : {cpu::Isa::kScalar, cpu::Isa::kAvx2, cpu::Isa::kAvx512}) {
    if (!cpu::isa_supported(isa)) {
      // Not "[  SKIPPED ]": ctest would then report the whole test as skipped.
      std::printf("[   NOTE   ] isa %d: not on this processor, not run\n", static_cast<int>(isa));
      continue;
    }
    const cpu::QuantizedKernels& kernels = cpu::quantized_kernels(isa);
    uint32_t seed = 1;
    for (const Shape& s : kShapes) {
      const QuantizedHostMatrix m = random_matrix(s, seed++);
      const std::vector<float> expected = m.dequantize();
      std::vector<float> got(expected.size(), -1.0f);
      // Two calls on row ranges, so the row offset is exercised too.
      kernels.dequantize_rows(m.view(), 0, 2, got.data());
      kernels.dequantize_rows(m.view(), 2, s.rows, got.data() + 2 * s.cols);
      ASSERT_EQ(got, expected) << kernels.name << " bits " << s.bits << " cols " << s.cols;

      const std::vector<float> x = random_input(static_cast<size_t>(s.cols), seed++);
      std::vector<float> y(static_cast<size_t>(s.rows));
      kernels.dot_rows(m.view(), x.data(), 0, s.rows, y.data());
      for (int64_t r = 0; r < s.rows; ++r) {
        double sum = 0.0, magnitude = 0.0;
        for (int64_t c = 0; c < s.cols; ++c) {
          sum += static_cast<double>(expected[r * s.cols + c]) * x[c];
          magnitude += std::abs(static_cast<double>(expected[r * s.cols + c]) * x[c]);
        }
        EXPECT_NEAR(y[r], sum, 1e-6 * magnitude + 1e-7) << kernels.name << " row " << r;
      }
    }
  }
}

TEST(QuantizedLinear, MatchesOpenBlasOnTheDequantizedWeights) {
  uint32_t seed = 100;
  for (const Shape& s : kShapes) {
    const QuantizedHostMatrix m = random_matrix(s, seed++);
    const std::vector<float> dense = m.dequantize();
    const std::vector<float> bias = random_input(static_cast<size_t>(s.rows), seed++);
    for (int tokens : {1, 3, 4, 17}) {  // GEMV below 4 rows, dequantized tiles from 4
      const std::vector<float> x = random_input(static_cast<size_t>(tokens * s.cols), seed++);
      std::vector<float> expected(static_cast<size_t>(tokens * s.rows));
      std::vector<float> got(expected.size());
      cpu::linear(x.data(), dense.data(), bias.data(), tokens, s.rows, s.cols, expected.data());
      cpu::quantized_linear(x.data(), m.view(), bias.data(), tokens, got.data());
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_NEAR(got[i], expected[i], 1e-5f * (1.0f + std::abs(expected[i])))
            << "bits " << s.bits << " cols " << s.cols << " tokens " << tokens << " at " << i;
      }
    }
  }
}

}  // namespace
}  // namespace tpserve::kernels
