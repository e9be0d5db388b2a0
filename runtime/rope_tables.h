// Rotary inverse frequencies for a config, computed in float32 exactly as transformers does
// (inv_freq = 1 / theta^(2i / rotary_dim)), then adjusted by the config's rope scaling.
#pragma once

#include <vector>

#include "runtime/model_config.h"

namespace tpserve::runtime {

std::vector<float> rope_inv_freq(const RopeConfig& rope);

}  // namespace tpserve::runtime
