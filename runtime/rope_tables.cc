#include "runtime/rope_tables.h"

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
    // Dynamic NTK rescales the base only for contexts beyond the trained length; tpserve caps the
    // context there (max_position_embeddings), so the frequencies are the unscaled ones.
    case RopeScaling::kDynamic: break;
    case RopeScaling::kLinear:
      // Linear scaling divides positions by `factor`; dividing the frequencies is the same angle.
      for (float& frequency : inv_freq) frequency /= rope.factor;
      break;
    case RopeScaling::kLlama3: apply_llama3(rope, inv_freq); break;
  }
  return inv_freq;
}

}  // namespace tpserve::runtime
