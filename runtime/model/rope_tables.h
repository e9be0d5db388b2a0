// Rotary inverse frequencies for a config, computed in float32 exactly as transformers does
// (inv_freq = 1 / theta^(2i / rotary_dim)), then adjusted by the config's rope scaling (linear,
// llama3, yarn; dynamic NTK per token, below); and the
// per-token factors of the long-context schemes (dynamic NTK, Qwen v1's logn attention).
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/config/model_config.h"

namespace tpserve::runtime {

std::vector<float> rope_inv_freq(const RopeConfig& rope);

// Dynamic NTK's g for a token at `position` of a sequence whose prompt has `prompt_tokens` tokens
// (model_config.h: base' = base * g^(d / (d - 2)), so inv_freq'_i = inv_freq_i * g^(-2i / (d - 2));
// the RoPE ops take g per token as RopeParams::frequency_scale). kDynamic: L = max(prompt_tokens,
// position + 1), the max(position) + 1 of the forward transformers runs for that token (the whole
// prompt at prefill, whatever tpserve's chunking); kQwenNtk: L = prompt_tokens. 1 when
// L <= trained_context or for the other scalings.
float dynamic_ntk_scale(const RopeConfig& rope, int64_t prompt_tokens, int32_t position);

// Qwen v1's logn attention factor of the query at `position`: log(position + 1) / log(context)
// when position + 1 > context, else 1 (also when context is 0: off).
float logn_query_scale(int64_t context, int32_t position);

}  // namespace tpserve::runtime
