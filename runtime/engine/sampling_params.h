// Per-request sampling parameters, with the meaning and defaults of vLLM's SamplingParams / the
// OpenAI completions API, and their validation at the edge (no field reaches the sampler
// unchecked).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/tokenizer/model_files.h"

namespace tpserve::runtime {

struct SamplingParams {
  float temperature = 1.0f;         // 0 = greedy (vLLM: below 1e-5 counts as 0)
  int32_t top_k = 0;                // 0 = off
  float top_p = 1.0f;               // in (0, 1]; 1 = off
  float min_p = 0.0f;               // in [0, 1]; 0 = off
  float repetition_penalty = 1.0f;  // HF style, over prompt + output tokens; 1 = off
  float presence_penalty = 0.0f;    // OpenAI style, over output tokens, in [-2, 2]
  float frequency_penalty = 0.0f;   // OpenAI style, over output tokens, in [-2, 2]
  std::optional<uint64_t> seed;     // unset: a fresh seed from a process-wide source
  std::vector<std::string> stop;    // stop strings; not included in the output (vLLM's default)
  std::vector<int32_t> stop_token_ids;
  int32_t max_tokens = 16;
  bool ignore_eos = false;
  int32_t n = 1;         // independent sequences per request
  int32_t logprobs = 0;  // top alternatives per token, 0 = none
  // OpenAI's logit_bias: added to the token's logit before any penalty (vLLM's order), in
  // [-100, 100]; -100 in effect bans a token, 100 forces it.
  std::vector<std::pair<int32_t, float>> logit_bias;
};

// What this server accepts. vocab_size is the model's (its logits' width) and must be set.
struct SamplingLimits {
  int32_t vocab_size = 0;
  int32_t max_n = 16;
  int32_t max_logprobs = 20;  // OpenAI's top_logprobs limit
  int32_t max_stop = 16;
  int32_t max_stop_length = 256;  // bytes
  int32_t max_logit_bias = 300;   // OpenAI's limit on biased tokens
};

// The values a request's unset sampling fields take: vLLM's / the OpenAI API's (the initialisers
// above), overridden, as vLLM does, by the model's generation_config.json where it sets
// temperature, top_p, top_k, min_p or repetition_penalty. do_sample: false makes the default greedy
// (temperature 0) whatever its temperature says, as transformers' generate() does. A top_k at or
// above the vocabulary keeps every token, so it becomes 0 (off), which validate() accepts.
SamplingParams sampling_defaults(const GenerationConfig& generation, int32_t vocab_size);

// Throws tpserve::Error naming the field and its value:
//   kInvalidArgument for a value outside the field's meaning (negative temperature, NaN, top_p of
//     0, an empty stop string, n < 1, max_tokens < 1, ...);
//   kOutOfRange for a meaningful value beyond this server's limits or the vocabulary (n > max_n,
//     logprobs > max_logprobs, too many or too long stop strings, top_k > vocab, stop token ids
//     or logit_bias ids outside [0, vocab), more than max_logit_bias biases).
// The prompt's own checks (empty, ids, prompt + max_tokens vs context) belong to the caller.
void validate(const SamplingParams& params, const SamplingLimits& limits);

}  // namespace tpserve::runtime
