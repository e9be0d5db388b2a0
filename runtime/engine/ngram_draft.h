// Prompt-lookup drafting (Saxena's "prompt lookup decoding", vLLM's ngram speculator): the last n
// tokens of a sequence, searched for in its earlier tokens; what followed their most recent
// earlier occurrence is the draft. Longer n first (max_n down to 1): a longer match predicts better.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace tpserve::runtime {

// Up to `count` draft tokens for `tokens`' continuation; empty when no n-gram recurs.
std::vector<int32_t> ngram_draft(std::span<const int32_t> tokens, int count, int max_n = 3);

}  // namespace tpserve::runtime
