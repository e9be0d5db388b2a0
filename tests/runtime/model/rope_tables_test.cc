// YaRN's frequencies against transformers' _compute_yarn_parameters (5.24), printed for the
// qwen2_yarn fixture's rope (theta 100, 32 rotary dims, factor 4, original context 16, beta 32 / 1):
//   ROPE_INIT_FUNCTIONS["yarn"](Qwen2ForCausalLM.from_pretrained("qwen2_yarn").config, None)
// Pair 0 keeps its frequency (extrapolation), pairs 1..3 blend, pairs 4.. are divided by 4.
#include <gtest/gtest.h>

#include "runtime/model/rope_tables.h"

namespace tpserve::runtime {
namespace {

TEST(RopeTables, YarnMatchesTransformers) {
  RopeConfig rope;
  rope.theta = 100.0f;
  rope.rotary_dim = 32;
  rope.scaling = RopeScaling::kYarn;
  rope.factor = 4.0f;
  rope.original_max_position_embeddings = 16;
  const std::vector<float> transformers = {
      1.0f,          0.6092890501f, 0.3514633179f, 0.1844922304f, 0.07905694097f, 0.05928434059f,
      0.04445698485f, 0.03333803639f, 0.02500000037f, 0.01874735393f, 0.01405853219f,
      0.01054241229f, 0.007905694656f, 0.005928433966f, 0.004445698578f, 0.003333803732f};
  const std::vector<float> ours = rope_inv_freq(rope);
  ASSERT_EQ(ours.size(), transformers.size());
  for (size_t i = 0; i < ours.size(); ++i) {
    EXPECT_NEAR(ours[i], transformers[i], 1e-6f * transformers[i]) << "pair " << i;
  }
  // "truncate": false keeps the ramp's fractional end (3.25.. instead of 4), as transformers does.
  rope.truncate = false;
  const std::vector<float> untruncated = {1.0f, 0.5767096281f, 0.3026010394f, 0.1295299232f,
                                          0.07905694097f, 0.05928434059f};
  const std::vector<float> loose = rope_inv_freq(rope);
  for (size_t i = 0; i < untruncated.size(); ++i) {
    EXPECT_NEAR(loose[i], untruncated[i], 1e-6f * untruncated[i]) << "pair " << i;
  }
}

}  // namespace
}  // namespace tpserve::runtime
