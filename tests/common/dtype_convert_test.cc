// convert_to_f32 on every instruction set this processor has, against the scalar reference
// (f16_to_f32 / bf16_to_f32 per element) on all 65536 bit patterns of each 16-bit dtype: NaN
// (quiet and signaling, both signs, every payload), infinities, subnormals, zeros. Bits are
// compared, not values, so a quieted NaN or a flushed subnormal fails.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "common/dtype.h"

namespace tpserve {
namespace {

uint32_t bits_of(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

std::vector<uint16_t> all_patterns() {
  std::vector<uint16_t> values(65536);
  for (uint32_t i = 0; i < 65536; ++i) values[i] = static_cast<uint16_t>(i);
  return values;
}

class ConvertIsaTest : public ::testing::TestWithParam<ConvertIsa> {
 protected:
  void SetUp() override {
    if (!convert_isa_supported(GetParam())) {
      GTEST_SKIP() << "this processor lacks " << convert_isa_name(GetParam());
    }
  }
};

// Hand-computed values (IEEE 754 binary16 / bfloat16 definitions), so the reference itself is
// checked against something outside this code.
TEST(ConvertReference, KnownValues) {
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(f16_to_f32(0x03ff), std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(bits_of(f16_to_f32(0x7c00)), 0x7f800000u);
  EXPECT_EQ(bits_of(f16_to_f32(0xfc00)), 0xff800000u);
  EXPECT_EQ(bits_of(f16_to_f32(0x7c01)), 0x7f802000u);  // signaling NaN keeps its payload
  EXPECT_EQ(bits_of(f16_to_f32(0x8000)), 0x80000000u);
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  EXPECT_EQ(bits_of(bf16_to_f32(0x7f81)), 0x7f810000u);
  EXPECT_EQ(bf16_to_f32(0x0001), std::ldexp(1.0f, -133));  // subnormal
}

TEST_P(ConvertIsaTest, EveryF16AndBf16PatternMatchesTheScalarReference) {
  const std::vector<uint16_t> patterns = all_patterns();
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    std::vector<float> out(patterns.size());
    convert_to_f32_with(GetParam(), dtype, patterns.data(), out.data(),
                        static_cast<int64_t>(patterns.size()));
    int mismatches = 0;
    for (size_t i = 0; i < patterns.size() && mismatches < 5; ++i) {
      const float expected = dtype == DType::kF16 ? f16_to_f32(patterns[i]) : bf16_to_f32(patterns[i]);
      if (bits_of(out[i]) != bits_of(expected)) {
        ++mismatches;
        ADD_FAILURE() << dtype_name(dtype) << " 0x" << std::hex << patterns[i] << ": got 0x"
                      << bits_of(out[i]) << ", reference 0x" << bits_of(expected);
      }
    }
  }
}

// Lengths that leave every possible vector tail, at an odd element offset (unaligned source and
// destination); the elements past n stay untouched.
TEST_P(ConvertIsaTest, TailsAndUnalignedPointers) {
  std::vector<uint16_t> source(80);
  for (size_t i = 0; i < source.size(); ++i) source[i] = static_cast<uint16_t>(0x7c01 + 977 * i);
  for (DType dtype : {DType::kF16, DType::kBF16, DType::kF32}) {
    for (int64_t n = 0; n <= 37; ++n) {
      std::vector<float> out(48, -7.0f);
      convert_to_f32_with(GetParam(), dtype, source.data() + 1, out.data() + 1, n);
      for (int64_t i = 0; i < n; ++i) {
        uint32_t expected;
        if (dtype == DType::kF32) {
          std::memcpy(&expected, source.data() + 1 + 2 * i, 4);
        } else {
          const uint16_t bits = source[static_cast<size_t>(1 + i)];
          expected = bits_of(dtype == DType::kF16 ? f16_to_f32(bits) : bf16_to_f32(bits));
        }
        ASSERT_EQ(bits_of(out[static_cast<size_t>(1 + i)]), expected)
            << dtype_name(dtype) << " n " << n << " i " << i;
      }
      EXPECT_EQ(out[0], -7.0f);
      EXPECT_EQ(out[static_cast<size_t>(n + 1)], -7.0f) << dtype_name(dtype) << " n " << n;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, ConvertIsaTest,
                         ::testing::Values(ConvertIsa::kScalar, ConvertIsa::kAvx2, ConvertIsa::kAvx512),
                         [](const auto& info) { return std::string(convert_isa_name(info.param)) == "avx2+f16c" ? std::string("avx2") : std::string(convert_isa_name(info.param)); });

}  // namespace
}  // namespace tpserve
