#include "runtime/engine/sampling_params.h"

#include <cmath>

#include "common/check.h"
#include "common/error.h"
#include "runtime/tokenizer/utf8.h"

namespace tpserve::runtime {
namespace {

// Written as !(in range) so that NaN fails every check.
bool within(float value, float low, float high) { return value >= low && value <= high; }

void validate_scalars(const SamplingParams& p, const SamplingLimits& limits) {
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature)) {
    raise(ErrorCode::kInvalidArgument, "temperature must be a finite number >= 0, got {}",
          p.temperature);
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    raise(ErrorCode::kInvalidArgument, "top_p must be in (0, 1], got {}", p.top_p);
  }
  if (p.top_k < 0) {
    raise(ErrorCode::kInvalidArgument, "top_k must be >= 0 (0 turns it off), got {}", p.top_k);
  }
  if (p.top_k > limits.vocab_size) {
    raise(ErrorCode::kOutOfRange, "top_k must be at most the vocabulary size {}, got {}",
          limits.vocab_size, p.top_k);
  }
  if (!within(p.min_p, 0.0f, 1.0f)) {
    raise(ErrorCode::kInvalidArgument, "min_p must be in [0, 1], got {}", p.min_p);
  }
  if (!(p.repetition_penalty > 0.0f) || !std::isfinite(p.repetition_penalty)) {
    raise(ErrorCode::kInvalidArgument, "repetition_penalty must be a finite number > 0, got {}",
          p.repetition_penalty);
  }
  // OpenAI's documented range for both penalties.
  if (!within(p.presence_penalty, -2.0f, 2.0f)) {
    raise(ErrorCode::kInvalidArgument, "presence_penalty must be in [-2, 2], got {}",
          p.presence_penalty);
  }
  if (!within(p.frequency_penalty, -2.0f, 2.0f)) {
    raise(ErrorCode::kInvalidArgument, "frequency_penalty must be in [-2, 2], got {}",
          p.frequency_penalty);
  }
}

void validate_counts(const SamplingParams& p, const SamplingLimits& limits) {
  if (p.n < 1) raise(ErrorCode::kInvalidArgument, "n must be >= 1, got {}", p.n);
  if (p.n > limits.max_n) {
    raise(ErrorCode::kOutOfRange, "n must be at most {}, got {}", limits.max_n, p.n);
  }
  if (p.logprobs < 0) {
    raise(ErrorCode::kInvalidArgument, "logprobs must be >= 0 (0 = none), got {}", p.logprobs);
  }
  if (p.logprobs > limits.max_logprobs) {
    raise(ErrorCode::kOutOfRange, "logprobs must be at most {}, got {}", limits.max_logprobs,
          p.logprobs);
  }
  if (p.max_tokens < 1) {
    raise(ErrorCode::kInvalidArgument, "max_tokens must be >= 1, got {}", p.max_tokens);
  }
}

void validate_stops(const SamplingParams& p, const SamplingLimits& limits) {
  if (p.stop.size() > static_cast<size_t>(limits.max_stop)) {
    raise(ErrorCode::kOutOfRange, "stop: at most {} stop strings are allowed, got {}",
          limits.max_stop, p.stop.size());
  }
  for (size_t i = 0; i < p.stop.size(); ++i) {
    if (p.stop[i].empty()) raise(ErrorCode::kInvalidArgument, "stop[{}] is an empty string", i);
    // Stops are matched against decoded text, which is valid UTF-8: another string never matches.
    if (size_t bad = utf8::find_invalid(p.stop[i]); bad != std::string::npos) {
      raise(ErrorCode::kInvalidArgument, "stop[{}] is not valid UTF-8 (byte offset {})", i, bad);
    }
    if (p.stop[i].size() > static_cast<size_t>(limits.max_stop_length)) {
      raise(ErrorCode::kOutOfRange, "stop[{}] is {} bytes long, the limit is {}", i,
            p.stop[i].size(), limits.max_stop_length);
    }
  }
  for (size_t i = 0; i < p.stop_token_ids.size(); ++i) {
    const int32_t id = p.stop_token_ids[i];
    if (id < 0 || id >= limits.vocab_size) {
      raise(ErrorCode::kOutOfRange, "stop_token_ids[{}] = {} is outside the vocabulary [0, {})", i,
            id, limits.vocab_size);
    }
  }
}

void validate_logit_bias(const SamplingParams& p, const SamplingLimits& limits) {
  if (p.logit_bias.size() > static_cast<size_t>(limits.max_logit_bias)) {
    raise(ErrorCode::kOutOfRange, "logit_bias: at most {} tokens may be biased, got {}",
          limits.max_logit_bias, p.logit_bias.size());
  }
  for (const auto& [id, bias] : p.logit_bias) {
    if (id < 0 || id >= limits.vocab_size) {
      raise(ErrorCode::kOutOfRange, "logit_bias: token {} is outside the vocabulary [0, {})", id,
            limits.vocab_size);
    }
    // OpenAI's documented range.
    if (!within(bias, -100.0f, 100.0f)) {
      raise(ErrorCode::kInvalidArgument, "logit_bias: the bias of token {} must be in [-100, 100], "
            "got {}", id, bias);
    }
  }
}

}  // namespace

SamplingParams sampling_defaults(const GenerationConfig& generation, int32_t vocab_size) {
  SamplingParams defaults;
  if (generation.temperature) defaults.temperature = *generation.temperature;
  if (generation.top_p) defaults.top_p = *generation.top_p;
  if (generation.top_k) defaults.top_k = *generation.top_k >= vocab_size ? 0 : *generation.top_k;
  if (generation.min_p) defaults.min_p = *generation.min_p;
  if (generation.repetition_penalty) defaults.repetition_penalty = *generation.repetition_penalty;
  if (generation.do_sample == false) defaults.temperature = 0.0f;
  return defaults;
}

void validate(const SamplingParams& params, const SamplingLimits& limits) {
  TPS_CHECK(limits.vocab_size > 0, "SamplingLimits.vocab_size must be set from the model");
  validate_scalars(params, limits);
  validate_counts(params, limits);
  validate_stops(params, limits);
  validate_logit_bias(params, limits);
}

}  // namespace tpserve::runtime
