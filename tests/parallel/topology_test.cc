// choose_gpu_comm's every branch, and the host-side f32 <-> bf16/f16 conversions the host-staged
// communicator reduces through, against hand-computed IEEE bit patterns.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cuda_backend.h"
#include "parallel/gpu_communicator.h"
#include "parallel/half_convert.h"
#include "parallel/topology.h"

namespace tpserve::parallel {
namespace {

NodeTopology node(int local_rank, int local_size) { return {local_rank, local_size, "gpu-node-7"}; }

TEST(ChooseGpuComm, NoDeviceIsAnErrorNamingTheHost) {
  for (bool allow_shared : {false, true}) {
    const GpuCommChoice choice = choose_gpu_comm(node(0, 2), 0, allow_shared);
    EXPECT_FALSE(choice.ok());
    EXPECT_NE(choice.error.find("no CUDA device on gpu-node-7"), std::string::npos) << choice.error;
  }
}

TEST(ChooseGpuComm, OneGpuPerRankIsNcclOnTheLocalRank) {
  for (int local_rank = 0; local_rank < 4; ++local_rank) {
    const GpuCommChoice choice = choose_gpu_comm(node(local_rank, 4), 8, /*allow_shared_gpu=*/false);
    ASSERT_TRUE(choice.ok()) << choice.error;
    EXPECT_EQ(choice.kind, GpuCommKind::kNccl);
    EXPECT_EQ(choice.device, local_rank);
    EXPECT_FALSE(choice.reason.empty());
  }
  // Exactly as many ranks as GPUs, and a single rank on a single GPU; sharing allowed or not.
  for (bool allow_shared : {false, true}) {
    EXPECT_EQ(choose_gpu_comm(node(1, 2), 2, allow_shared).kind, GpuCommKind::kNccl);
    EXPECT_EQ(choose_gpu_comm(node(1, 2), 2, allow_shared).device, 1);
    EXPECT_EQ(choose_gpu_comm(node(0, 1), 1, allow_shared).kind, GpuCommKind::kNccl);
    EXPECT_EQ(choose_gpu_comm(node(0, 1), 1, allow_shared).device, 0);
  }
}

TEST(ChooseGpuComm, SharedGpusAllowedAreHostStagedRoundRobin) {
  const int expected_device[] = {0, 1, 0, 1, 0};
  for (int local_rank = 0; local_rank < 5; ++local_rank) {
    const GpuCommChoice choice = choose_gpu_comm(node(local_rank, 5), 2, /*allow_shared_gpu=*/true);
    ASSERT_TRUE(choice.ok()) << choice.error;
    EXPECT_EQ(choice.kind, GpuCommKind::kHostStaged);
    EXPECT_EQ(choice.device, expected_device[local_rank]);
    EXPECT_NE(choice.reason.find("--allow-shared-gpu"), std::string::npos) << choice.reason;
  }
  const GpuCommChoice one_gpu = choose_gpu_comm(node(1, 2), 1, true);
  EXPECT_EQ(one_gpu.kind, GpuCommKind::kHostStaged);
  EXPECT_EQ(one_gpu.device, 0);
}

TEST(ChooseGpuComm, SharedGpusNotAllowedExplainTheNumbersAndTheFlag) {
  const GpuCommChoice choice = choose_gpu_comm(node(2, 3), 2, /*allow_shared_gpu=*/false);
  EXPECT_FALSE(choice.ok());
  EXPECT_NE(choice.error.find("3 ranks on gpu-node-7 share 2 GPU(s)"), std::string::npos)
      << choice.error;
  EXPECT_NE(choice.error.find("NCCL needs one GPU per rank"), std::string::npos) << choice.error;
  EXPECT_NE(choice.error.find("at most 2 ranks per node"), std::string::npos) << choice.error;
  EXPECT_NE(choice.error.find("--allow-shared-gpu"), std::string::npos) << choice.error;
}

TEST(GpuCommunicator, BuildWithoutCudaSeesNoDevice) {
#if TPSERVE_HAVE_CUDA
  GTEST_SKIP() << "CUDA build: devices and the factory are exercised by gpu_comm_mpitest";
#else
  EXPECT_EQ(kernels::cuda_device_count(), 0);
#endif
}

// --- half_convert.h -------------------------------------------------------------------------

float from_bits(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

uint16_t narrow_one(DType dtype, float value) {
  uint16_t bits = 0;
  narrow_from_f32(dtype, &value, &bits, 1);
  return bits;
}

float widen_one(DType dtype, uint16_t bits) {
  float value = 0;
  widen_to_f32(dtype, &bits, &value, 1);
  return value;
}

TEST(HalfConvert, Bf16RoundsToNearestEven) {
  EXPECT_EQ(narrow_one(DType::kBF16, 1.0f), 0x3f80);
  EXPECT_EQ(narrow_one(DType::kBF16, -2.0f), 0xc000);
  EXPECT_EQ(narrow_one(DType::kBF16, -0.0f), 0x8000);
  // 1 + 2^-8 lies halfway between 0x3f80 (even) and 0x3f81: ties go to even.
  EXPECT_EQ(narrow_one(DType::kBF16, from_bits(0x3f808000)), 0x3f80);
  // 1 + 3 * 2^-8 lies halfway between 0x3f81 (odd) and 0x3f82 (even).
  EXPECT_EQ(narrow_one(DType::kBF16, from_bits(0x3f818000)), 0x3f82);
  // Just above / below the halfway point.
  EXPECT_EQ(narrow_one(DType::kBF16, from_bits(0x3f808001)), 0x3f81);
  EXPECT_EQ(narrow_one(DType::kBF16, from_bits(0x3f817fff)), 0x3f81);
  // The largest float rounds up to infinity; infinities and NaN survive.
  EXPECT_EQ(narrow_one(DType::kBF16, std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(narrow_one(DType::kBF16, std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(narrow_one(DType::kBF16, -std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_TRUE(std::isnan(widen_one(DType::kBF16,
                                   narrow_one(DType::kBF16, std::numeric_limits<float>::quiet_NaN()))));
  // A NaN whose payload sits only in the low 16 bits must not become infinity.
  EXPECT_TRUE(std::isnan(widen_one(DType::kBF16, narrow_one(DType::kBF16, from_bits(0x7f800001)))));
}

TEST(HalfConvert, F16RoundsToNearestEven) {
  EXPECT_EQ(narrow_one(DType::kF16, 1.0f), 0x3c00);
  EXPECT_EQ(narrow_one(DType::kF16, -2.0f), 0xc000);
  EXPECT_EQ(narrow_one(DType::kF16, -0.0f), 0x8000);
  EXPECT_EQ(narrow_one(DType::kF16, 65504.0f), 0x7bff);  // largest finite half
  // 1 + 2^-11: halfway between 0x3c00 (even) and 0x3c01 -> 0x3c00; 1 + 3 * 2^-11 -> 0x3c02.
  EXPECT_EQ(narrow_one(DType::kF16, 1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(narrow_one(DType::kF16, 1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  // Overflow: 65520 is halfway between 65504 and 65536 (= inf) and ties to even (inf).
  EXPECT_EQ(narrow_one(DType::kF16, 65519.0f), 0x7bff);
  EXPECT_EQ(narrow_one(DType::kF16, 65520.0f), 0x7c00);
  EXPECT_EQ(narrow_one(DType::kF16, 1e30f), 0x7c00);
  EXPECT_EQ(narrow_one(DType::kF16, -std::numeric_limits<float>::infinity()), 0xfc00);
  // Subnormals: 2^-24 is the smallest; 2^-25 ties to 0 (even); 3 * 2^-25 ties to 2 (even).
  EXPECT_EQ(narrow_one(DType::kF16, std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(narrow_one(DType::kF16, std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(narrow_one(DType::kF16, 3 * std::ldexp(1.0f, -25)), 0x0002);
  EXPECT_EQ(widen_one(DType::kF16, 0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(widen_one(DType::kF16, 0x03ff), 1023 * std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isnan(widen_one(DType::kF16,
                                   narrow_one(DType::kF16, std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isinf(widen_one(DType::kF16, 0x7c00)));
}

// Every non-NaN 16-bit pattern widens exactly and narrows back to itself; NaNs stay NaN.
TEST(HalfConvert, EveryPatternRoundTrips) {
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    std::vector<uint16_t> bits(65536), back(65536);
    for (uint32_t b = 0; b < 65536; ++b) bits[b] = static_cast<uint16_t>(b);
    std::vector<float> wide(65536);
    widen_to_f32(dtype, bits.data(), wide.data(), bits.size());
    narrow_from_f32(dtype, wide.data(), back.data(), wide.size());
    for (uint32_t b = 0; b < 65536; ++b) {
      if (std::isnan(wide[b])) {
        EXPECT_TRUE(std::isnan(widen_one(dtype, back[b]))) << dtype_name(dtype) << " " << b;
      } else {
        ASSERT_EQ(back[b], bits[b]) << dtype_name(dtype) << " pattern " << b;
      }
    }
  }
}

// What the host-staged all-reduce relies on: small integers and their sums are exact.
TEST(HalfConvert, SmallIntegersAreExact) {
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    std::vector<float> values;
    for (int i = -256; i <= 256; ++i) values.push_back(static_cast<float>(i));
    std::vector<unsigned char> narrow(values.size() * 4);
    std::vector<float> wide(values.size());
    narrow_from_f32(dtype, values.data(), narrow.data(), values.size());
    widen_to_f32(dtype, narrow.data(), wide.data(), values.size());
    EXPECT_EQ(wide, values) << dtype_name(dtype);
  }
}

}  // namespace
}  // namespace tpserve::parallel
