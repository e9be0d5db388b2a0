#include "runtime/engine/sampler.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <random>

#include "common/check.h"
#include "common/error.h"
#include "runtime/engine/splitmix.h"

namespace tpserve::runtime {
namespace {

// vLLM's _SAMPLING_EPS: a temperature below it means greedy.
constexpr float kGreedyBelow = 1e-5f;
constexpr uint64_t kGamma = kSplitmixGamma;
// Below this many candidates, top_p sorts instead of bisecting further.
constexpr size_t kSortBelow = 256;

// Seeds for sequences that asked for none: one splitmix64 stream for the process, started from
// the OS's entropy and the clock.
uint64_t fresh_seed() {
  static std::atomic<uint64_t> state{[] {
    std::random_device device;
    const uint64_t entropy = (static_cast<uint64_t>(device()) << 32) ^ device();
    return entropy ^
           static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }()};
  return mix64(state.fetch_add(kGamma, std::memory_order_relaxed) + kGamma);
}

struct Candidate {
  float logit;   // penalised, divided by the temperature
  float weight;  // exp(logit - max logit): the unnormalised probability, 1 for the most likely
  int32_t token_id;
};

// Most likely first, lowest id on ties: a strict total order, so every selection is reproducible.
bool more_likely(const Candidate& a, const Candidate& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.token_id < b.token_id);
}

// Per thread, grown once to the vocabulary and reused by every sequence the thread samples.
struct Workspace {
  std::vector<float> logits;          // penalised logits
  std::vector<Candidate> candidates;  // tokens still in the running
  std::vector<int32_t> counts;        // output token counts; all zero between calls
  std::vector<float> biased;          // logits + logit_bias, what the repetition penalty scales
};

Workspace& workspace() {
  thread_local Workspace ws;
  return ws;
}

// A NaN or +inf logit makes every probability meaningless: a numerical fault of the model.
void check_logit(float x) {
  if (std::isnan(x) || x == std::numeric_limits<float>::infinity()) [[unlikely]] {
    raise(ErrorCode::kInternal, "sampler: the logits hold {} (numerical fault in the forward)", x);
  }
}

void check_ids(std::span<const int32_t> ids, size_t vocab) {
  for (int32_t id : ids) {
    TPS_CHECK(id >= 0 && static_cast<size_t>(id) < vocab, "token id {} outside the {} logits", id,
              vocab);
  }
}

// HF RepetitionPenaltyLogitsProcessor. Computed from the raw logit, so a token that occurs many
// times is penalised once.
void apply_repetition_penalty(std::span<const float> raw, std::span<const int32_t> ids,
                              float penalty, std::vector<float>& logits) {
  for (int32_t id : ids) {
    const float x = raw[id];
    logits[id] = x > 0 ? x / penalty : x * penalty;
  }
}

// OpenAI: logit -= count * frequency_penalty + (count > 0) * presence_penalty.
void apply_output_penalties(std::span<const int32_t> output, float frequency, float presence,
                            std::vector<float>& logits, std::vector<int32_t>& counts) {
  for (int32_t id : output) ++counts[id];
  for (int32_t id : output) {
    if (counts[id] == 0) continue;  // already applied
    logits[id] -= frequency * static_cast<float>(counts[id]) + presence;
    counts[id] = 0;
  }
}

int32_t argmax(std::span<const float> logits) {
  size_t best = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    check_logit(logits[i]);
    if (logits[i] > logits[best]) best = i;
  }
  return static_cast<int32_t>(best);
}

// The k most likely of logits / temperature into `out`, best first. One pass keeping a k-entry
// heap whose front is the least likely kept: O(V) comparisons plus O(log k) per replacement.
void select_top_k(std::span<const float> logits, float temperature, size_t k,
                  std::vector<Candidate>& out) {
  out.clear();  // keeps its capacity
  for (size_t i = 0; i < logits.size(); ++i) {
    check_logit(logits[i]);
    const Candidate c{logits[i] / temperature, 0.0f, static_cast<int32_t>(i)};
    if (out.size() < k) {
      out.push_back(c);
      std::push_heap(out.begin(), out.end(), more_likely);
    } else if (more_likely(c, out.front())) {
      std::pop_heap(out.begin(), out.end(), more_likely);
      out.back() = c;
      std::push_heap(out.begin(), out.end(), more_likely);
    }
  }
  std::sort(out.begin(), out.end(), more_likely);
}

void select_all(std::span<const float> logits, float temperature, std::vector<Candidate>& out) {
  out.resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    check_logit(logits[i]);
    out[i] = {logits[i] / temperature, 0.0f, static_cast<int32_t>(i)};
  }
}

// Sets every weight to exp(logit - max); returns their sum. top_k, top_p and min_p all keep the
// most likely token, so these weights stay valid through every filter.
double set_weights(std::span<Candidate> candidates) {
  float max = -std::numeric_limits<float>::infinity();
  for (const Candidate& c : candidates) max = std::max(max, c.logit);
  if (max == -std::numeric_limits<float>::infinity()) {
    raise(ErrorCode::kInternal, "sampler: every logit is -inf");
  }
  double total = 0;
  for (Candidate& c : candidates) {
    c.weight = std::exp(c.logit - max);
    total += c.weight;
  }
  return total;
}

double sum_weights(std::span<const Candidate> candidates) {
  double total = 0;
  for (const Candidate& c : candidates) total += c.weight;
  return total;
}

// Drops candidates that can never be in the nucleus: together, tokens of weight below
// (1 - top_p) * total / n weigh less than (1 - top_p) * total, so the mass above each of them
// exceeds top_p. On a peaked distribution this leaves a handful.
size_t prune_for_top_p(std::span<Candidate> candidates, double total, float top_p) {
  const double floor = (1.0 - top_p) * total / static_cast<double>(candidates.size());
  const auto end = std::remove_if(candidates.begin(), candidates.end(),
                                  [&](const Candidate& c) { return c.weight < floor; });
  return static_cast<size_t>(end - candidates.begin());
}

// Moves the nucleus to the front and returns its size: the smallest most-likely set whose mass
// reaches top_p * total, i.e. vLLM's rule (a token is kept iff the mass strictly above it is below
// top_p). Unsorted input is bisected with nth_element, keeping the half above the cut whole, so the
// cost is O(n) expected rather than a full sort.
size_t keep_top_p(std::span<Candidate> candidates, bool sorted, double total, float top_p) {
  const double target = top_p * total;
  size_t lo = 0;
  size_t hi = candidates.size();
  double mass_above = 0;  // of candidates[0, lo), each more likely than all of [lo, hi)
  if (!sorted) {
    hi = prune_for_top_p(candidates, total, top_p);
    while (hi - lo > kSortBelow) {
      const size_t mid = lo + (hi - lo) / 2;
      std::nth_element(candidates.begin() + lo, candidates.begin() + mid, candidates.begin() + hi,
                       more_likely);
      const double upper = sum_weights(candidates.subspan(lo, mid - lo));
      if (mass_above + upper >= target) {
        hi = mid;  // the cut lies inside the upper half
      } else {
        mass_above += upper;  // the whole upper half is kept
        lo = mid;
      }
    }
    std::sort(candidates.begin() + lo, candidates.begin() + hi, more_likely);
  }
  for (size_t i = lo; i < hi; ++i) {
    mass_above += candidates[i].weight;
    if (mass_above >= target) return i + 1;
  }
  return hi;  // rounding left the sum a hair short of target: keep them all
}

// Drops p < min_p * p_max, i.e. weight < min_p (the most likely token has weight 1).
size_t keep_min_p(std::span<Candidate> candidates, float min_p) {
  const auto end = std::remove_if(candidates.begin(), candidates.end(),
                                  [&](const Candidate& c) { return c.weight < min_p; });
  return static_cast<size_t>(end - candidates.begin());
}

// Inverse CDF over the candidates in their current order.
int32_t draw(std::span<const Candidate> candidates, double uniform) {
  const double target = uniform * sum_weights(candidates);
  double cumulative = 0;
  size_t last_possible = 0;
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (candidates[i].weight == 0) continue;
    cumulative += candidates[i].weight;
    last_possible = i;
    if (cumulative > target) return candidates[i].token_id;
  }
  return candidates[last_possible].token_id;  // rounding: uniform ~ 1
}

void fill_logprobs(std::span<const float> raw, int32_t top, SampleResult& result) {
  float max = -std::numeric_limits<float>::infinity();
  for (float x : raw) max = std::max(max, x);
  double sum = 0;
  for (float x : raw) sum += std::exp(x - max);
  const double log_normaliser = static_cast<double>(max) + std::log(sum);
  result.logprob = static_cast<float>(raw[result.token_id] - log_normaliser);

  std::vector<Candidate>& candidates = workspace().candidates;
  select_top_k(raw, 1.0f, std::min(static_cast<size_t>(top), raw.size()), candidates);
  result.top_logprobs.resize(candidates.size());
  for (size_t i = 0; i < candidates.size(); ++i) {
    result.top_logprobs[i] = {candidates[i].token_id,
                              static_cast<float>(candidates[i].logit - log_normaliser)};
  }
}

}  // namespace

SequenceSampler::SequenceSampler(const SamplingParams& params)
    : temperature_(params.temperature),
      top_k_(params.top_k),
      top_p_(params.top_p),
      min_p_(params.min_p),
      repetition_penalty_(params.repetition_penalty),
      presence_penalty_(params.presence_penalty),
      frequency_penalty_(params.frequency_penalty),
      logprobs_(params.logprobs),
      logit_bias_(params.logit_bias),
      seed_(params.seed ? *params.seed : fresh_seed()),
      key_(mix64(seed_ + kGamma)) {}

bool SequenceSampler::greedy() const { return temperature_ < kGreedyBelow; }

double SequenceSampler::next_uniform() {
  ++draws_;
  return static_cast<double>(mix64(key_ + draws_ * kGamma) >> 11) * 0x1.0p-53;
}

std::span<const float> SequenceSampler::penalise(std::span<const float> logits,
                                                 std::span<const int32_t> prompt_ids,
                                                 std::span<const int32_t> output_ids) const {
  const bool repetition = repetition_penalty_ != 1.0f;
  const bool output_penalties = frequency_penalty_ != 0.0f || presence_penalty_ != 0.0f;
  if (!repetition && !output_penalties && logit_bias_.empty()) return logits;
  Workspace& ws = workspace();
  const size_t vocab = logits.size();
  check_ids(prompt_ids, vocab);
  check_ids(output_ids, vocab);
  ws.logits.assign(logits.begin(), logits.end());
  // The repetition penalty scales the biased logit, as vLLM's penalties follow the bias.
  std::span<const float> biased = logits;
  if (!logit_bias_.empty()) {
    for (const auto& [id, bias] : logit_bias_) {
      TPS_CHECK(id >= 0 && static_cast<size_t>(id) < vocab,
                "logit_bias id {} outside the {} logits", id, vocab);
      ws.logits[id] += bias;
    }
    ws.biased.assign(ws.logits.begin(), ws.logits.end());
    biased = ws.biased;
  }
  if (repetition) {
    apply_repetition_penalty(biased, prompt_ids, repetition_penalty_, ws.logits);
    apply_repetition_penalty(biased, output_ids, repetition_penalty_, ws.logits);
  }
  if (output_penalties) {
    if (ws.counts.size() < vocab) ws.counts.resize(vocab, 0);
    apply_output_penalties(output_ids, frequency_penalty_, presence_penalty_, ws.logits, ws.counts);
  }
  return ws.logits;
}

size_t SequenceSampler::prepare(std::span<const float> logits, std::span<const int32_t> prompt_ids,
                                std::span<const int32_t> output_ids, int32_t* greedy_token) const {
  TPS_CHECK(!logits.empty(), "sampler: empty logits row");
  const std::span<const float> penalised = penalise(logits, prompt_ids, output_ids);
  if (greedy()) {
    *greedy_token = argmax(penalised);
    return 0;
  }
  std::vector<Candidate>& buffer = workspace().candidates;
  const bool top_k = top_k_ > 0 && static_cast<size_t>(top_k_) < logits.size();
  if (top_k) {
    select_top_k(penalised, temperature_, static_cast<size_t>(top_k_), buffer);
  } else {
    select_all(penalised, temperature_, buffer);
  }
  std::span<Candidate> candidates = buffer;
  const double total = set_weights(candidates);
  if (top_p_ < 1.0f) candidates = candidates.first(keep_top_p(candidates, top_k, total, top_p_));
  if (min_p_ > 0.0f) candidates = candidates.first(keep_min_p(candidates, min_p_));
  return candidates.size();
}

SampleResult SequenceSampler::sample(std::span<const float> logits,
                                     std::span<const int32_t> prompt_ids,
                                     std::span<const int32_t> output_ids) {
  const double uniform = next_uniform();  // drawn even when greedy: the counter is the step
  SampleResult result;
  int32_t greedy_token = 0;
  const size_t kept = prepare(logits, prompt_ids, output_ids, &greedy_token);
  if (kept == 0) {
    result.token_id = greedy_token;
  } else {
    result.token_id = draw(std::span<const Candidate>(workspace().candidates).first(kept), uniform);
  }
  if (logprobs_ > 0) {
    fill_logprobs(logits, logprobs_, result);
  } else {
    result.logprob = std::numeric_limits<float>::quiet_NaN();
  }
  return result;
}

std::vector<double> SequenceSampler::distribution(std::span<const float> logits,
                                                  std::span<const int32_t> prompt_ids,
                                                  std::span<const int32_t> output_ids) const {
  std::vector<double> probs(logits.size(), 0.0);
  int32_t greedy_token = 0;
  const size_t kept = prepare(logits, prompt_ids, output_ids, &greedy_token);
  if (kept == 0) {
    probs[greedy_token] = 1.0;
    return probs;
  }
  const auto survivors = std::span<const Candidate>(workspace().candidates).first(kept);
  const double total = sum_weights(survivors);
  for (const Candidate& c : survivors) probs[c.token_id] = c.weight / total;
  return probs;
}

}  // namespace tpserve::runtime
