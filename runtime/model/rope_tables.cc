#include "runtime/model/rope_tables.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace tpserve::runtime {

namespace {

// Llama 3.1's scaling (transformers' _compute_llama3_parameters): wavelengths longer than
// original_context / low_freq_factor are divided by `factor`, shorter than
// original_context / high_freq_factor are kept, and the band between is interpolated smoothly.
void apply_llama3(const RopeConfig& rope, std::vector<float>& inv_freq) {
  const float old_context = static_cast<float>(rope.original_max_position_embeddings);
  const float low_freq_wavelen = old_context / rope.low_freq_factor;
  const float high_freq_wavelen = old_context / rope.high_freq_factor;
  for (float& frequency : inv_freq) {
    const float wavelen = 2.0f * std::numbers::pi_v<float> / frequency;
    if (wavelen > low_freq_wavelen) {
      frequency /= rope.factor;
    } else if (wavelen >= high_freq_wavelen) {
      const float smooth = (old_context / wavelen - rope.low_freq_factor) /
                           (rope.high_freq_factor - rope.low_freq_factor);
      frequency = (1.0f - smooth) * frequency / rope.factor + smooth * frequency;
    }
  }
}

// YaRN (transformers' _compute_yarn_parameters): pair i's frequency is the original one
// (extrapolation) where it turns more than beta_fast times within the original context, the
// original divided by `factor` (interpolation) where it turns fewer than beta_slow times, and
// linearly blended between: find_correction_dim gives the (fractional) pair index at which a
// frequency turns r times in L positions, d * ln(L / (2 pi r)) / (2 ln theta); the ramp runs from
// that of beta_fast (0: all extrapolation) to that of beta_slow (1: all interpolation).
void apply_yarn(const RopeConfig& rope, std::vector<float>& inv_freq) {
  const double dim = rope.rotary_dim;
  const double context = static_cast<double>(rope.original_max_position_embeddings);
  const auto correction_dim = [&](double rotations) {
    return dim * std::log(context / (rotations * 2.0 * std::numbers::pi)) /
           (2.0 * std::log(static_cast<double>(rope.theta)));
  };
  double low = correction_dim(rope.beta_fast);
  double high = correction_dim(rope.beta_slow);
  if (rope.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, dim - 1.0);
  if (low == high) high += 0.001;  // transformers' guard against a zero-width ramp
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const float ramp = std::clamp(static_cast<float>((static_cast<double>(i) - low) / (high - low)),
                                  0.0f, 1.0f);
    const float extrapolation = 1.0f - ramp;  // transformers' inv_freq_extrapolation_factor
    const float frequency = inv_freq[i];
    inv_freq[i] = frequency / rope.factor * (1.0f - extrapolation) + frequency * extrapolation;
  }
}

}  // namespace

std::vector<float> rope_inv_freq(const RopeConfig& rope) {
  const int pairs = rope.rotary_dim / 2;
  std::vector<float> inv_freq(static_cast<size_t>(pairs));
  for (int i = 0; i < pairs; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(rope.rotary_dim);
    inv_freq[static_cast<size_t>(i)] = 1.0f / std::pow(rope.theta, exponent);
  }
  switch (rope.scaling) {
    case RopeScaling::kNone: break;
    // Dynamic NTK: the trained frequencies, scaled per token by dynamic_ntk_scale in the op.
    case RopeScaling::kDynamic:
    case RopeScaling::kQwenNtk: break;
    case RopeScaling::kLinear:
      // Linear scaling divides positions by `factor`; dividing the frequencies is the same angle.
      for (float& frequency : inv_freq) frequency /= rope.factor;
      break;
    case RopeScaling::kLlama3: apply_llama3(rope, inv_freq); break;
    // YaRN's attention_factor multiplies cos and sin in the RoPE op (RopeParams::attention_scaling).
    case RopeScaling::kYarn: apply_yarn(rope, inv_freq); break;
  }
  return inv_freq;
}

float dynamic_ntk_scale(const RopeConfig& rope, int64_t prompt_tokens, int32_t position) {
  const double trained = static_cast<double>(rope.trained_context);
  if (rope.scaling == RopeScaling::kDynamic) {
    const double length = static_cast<double>(std::max<int64_t>(prompt_tokens, int64_t{position} + 1));
    if (length <= trained) return 1.0f;
    const double factor = rope.factor;
    return static_cast<float>(factor * length / trained - (factor - 1.0));
  }
  if (rope.scaling == RopeScaling::kQwenNtk) {
    // get_ntk_alpha: 2 ** math.ceil(math.log(L / seq_length, 2) + 1) - 1, at least 1. Python's
    // math.log(x, 2) is log(x) / log(2), not log2(x): the same quotient keeps ceil's answer at
    // exact powers of two (math.log(2 ** 29, 2) is 29.000000000000004).
    const double context_value =
        std::log(static_cast<double>(prompt_tokens) / trained) / std::log(2.0) + 1.0;
    const double alpha = std::exp2(std::ceil(context_value)) - 1.0;
    return static_cast<float>(std::max(alpha, 1.0));
  }
  return 1.0f;
}

float logn_query_scale(int64_t context, int32_t position) {
  if (context <= 0 || int64_t{position} + 1 <= context) return 1.0f;
  return static_cast<float>(std::log(static_cast<double>(position) + 1.0) /
                            std::log(static_cast<double>(context)));
}

}  // namespace tpserve::runtime
