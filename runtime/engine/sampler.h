// Token sampling for one sequence, on rank 0, from its float32 logits on the host.
//
// Order of processing (vLLM's; the filters in the order of its V0 sampler):
//   0. logit_bias (OpenAI): logit += bias, before the penalties, as vLLM V1 applies it.
//   1. repetition penalty (HF / CTRL style) over tokens in prompt + output:
//        logit > 0 ? logit / penalty : logit * penalty
//   2. frequency and presence penalties (OpenAI style) over output tokens:
//        logit -= frequency * count + presence * (count > 0)
//   3. temperature: below 1e-5 (vLLM's _SAMPLING_EPS) the token is the argmax of the penalised
//      logits, lowest id on ties, and steps 4-6 are skipped; otherwise logits / temperature.
//   4. top_k: keep the k highest (ties broken toward the lower id).
//   5. top_p: keep the smallest set of most likely tokens whose probability, renormalised over
//      what top_k kept, sums to >= top_p; always at least one.
//   6. min_p: drop tokens whose probability < min_p * the most likely token's probability.
//   7. draw from the renormalised survivors with the sequence's own RNG.
// vLLM V1 applies min_p before top_k/top_p; the two orders differ only in what top_p renormalises
// over, and this one is the order the issue specifies.
//
// Logprobs (when params.logprobs > 0) are those of the model's raw distribution, log_softmax of
// the logits before any penalty, temperature or filter: vLLM's default (logprobs_mode =
// "raw_logprobs") and what OpenAI returns.
//
// Reproducibility: each sequence owns a counter-based RNG, draw i = splitmix64 keyed by (seed, i),
// so a seeded sequence draws the same tokens whatever else shares the batch and in whatever order
// the engine samples its rows. Every sample() call, greedy or not, advances the counter.
//
// Cost per call, V = vocabulary: O(V) exp for the filter-free path; top_k selects with a k-entry
// heap in one pass, O(V log k) worst case and then touches only the k; top_p without top_k prunes
// tokens that provably cannot reach the nucleus, then bisects with nth_element (O(V) expected, no
// full sort); penalties cost O(prompt + output). Scratch buffers are per thread, grown once and
// reused by every sequence: no heap allocation per token except the top_logprobs vector when
// logprobs are asked for.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/engine/sampling_params.h"

namespace tpserve::runtime {

struct TopLogprob {
  int32_t token_id = 0;
  float logprob = 0;
};

struct SampleResult {
  int32_t token_id = 0;
  float logprob = 0;                     // raw logprob of token_id; NaN unless logprobs > 0
  std::vector<TopLogprob> top_logprobs;  // the `logprobs` most likely raw alternatives, best first
};

class SequenceSampler {
 public:
  // `params` must have passed validate(). Only the sampling fields are kept.
  explicit SequenceSampler(const SamplingParams& params);

  // logits: this sequence's row, one per vocabulary entry; prompt_ids / output_ids: the ids the
  // penalties look at (output_ids = tokens generated so far, not including this one).
  SampleResult sample(std::span<const float> logits, std::span<const int32_t> prompt_ids,
                      std::span<const int32_t> output_ids);

  // The distribution step 7 would draw from (steps 1-6), dense over the vocabulary; for greedy a
  // one-hot. For tests and debugging: it allocates, and it does not advance the RNG.
  std::vector<double> distribution(std::span<const float> logits,
                                   std::span<const int32_t> prompt_ids,
                                   std::span<const int32_t> output_ids) const;

  uint64_t seed() const { return seed_; }
  uint64_t draws() const { return draws_; }

 private:
  bool greedy() const;
  // Steps 0-2: the logits themselves when no bias or penalty applies, else a penalised copy.
  std::span<const float> penalise(std::span<const float> logits,
                                  std::span<const int32_t> prompt_ids,
                                  std::span<const int32_t> output_ids) const;
  // Steps 1-6 into the thread's workspace; returns the number of surviving candidates (0 when
  // greedy, with the argmax in *greedy_token).
  size_t prepare(std::span<const float> logits, std::span<const int32_t> prompt_ids,
                 std::span<const int32_t> output_ids, int32_t* greedy_token) const;
  double next_uniform();  // in [0, 1)

  float temperature_;
  int32_t top_k_;
  float top_p_;
  float min_p_;
  float repetition_penalty_;
  float presence_penalty_;
  float frequency_penalty_;
  int32_t logprobs_;
  std::vector<std::pair<int32_t, float>> logit_bias_;
  uint64_t seed_;
  uint64_t key_;        // splitmix64(seed_): keys of nearby seeds (seed + i for n > 1) unrelated
  uint64_t draws_ = 0;  // the counter
};

}  // namespace tpserve::runtime
