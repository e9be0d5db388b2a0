// The sampler's processing chain against hand-computed distributions and a full-sort reference,
// its per-sequence reproducibility, and its raw logprobs.
#include "runtime/engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <random>
#include <vector>

#include "common/error.h"

namespace tpserve::runtime {
namespace {

const std::vector<int32_t> kNoIds;

// ---- the processing chain -----------------------------------------------------------------------

// p = {0.15, 0.5, 0.05, 0.3}: sorted, token 1 > 3 > 0 > 2.
std::vector<float> four_token_logits() {
  return {std::log(0.15f), std::log(0.5f), std::log(0.05f), std::log(0.3f)};
}

SamplingParams with(std::function<void(SamplingParams&)> change) {
  SamplingParams params;
  params.seed = 1;
  change(params);
  return params;
}

std::vector<double> distribution_of(const SamplingParams& params, const std::vector<float>& logits,
                                    const std::vector<int32_t>& prompt = {},
                                    const std::vector<int32_t>& output = {}) {
  return SequenceSampler(params).distribution(logits, prompt, output);
}

void expect_probs(const std::vector<double>& actual, const std::vector<double>& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i)
    EXPECT_NEAR(actual[i], expected[i], 1e-6) << "token " << i;
}

std::vector<double> softmax(const std::vector<double>& logits) {
  const double max = *std::max_element(logits.begin(), logits.end());
  std::vector<double> probs;
  for (double x : logits) probs.push_back(std::exp(x - max));
  const double total = std::accumulate(probs.begin(), probs.end(), 0.0);
  for (double& p : probs) p /= total;
  return probs;
}

TEST(Sampler, UnfilteredDistributionIsSoftmax) {
  expect_probs(distribution_of(with([](auto&) {}), four_token_logits()), {0.15, 0.5, 0.05, 0.3});
}

TEST(Sampler, TemperatureSharpens) {
  // T = 0.5 squares the probabilities: {.0225, .25, .0025, .09} / .365.
  const double total = 0.365;
  expect_probs(distribution_of(with([](auto& p) { p.temperature = 0.5f; }), four_token_logits()),
               {0.0225 / total, 0.25 / total, 0.0025 / total, 0.09 / total});
}

TEST(Sampler, TopPKeepsSmallestSetReachingIt) {
  // 0.5 < 0.75 <= 0.5 + 0.3: tokens 1 and 3 survive.
  expect_probs(distribution_of(with([](auto& p) { p.top_p = 0.75f; }), four_token_logits()),
               {0, 0.5 / 0.8, 0, 0.3 / 0.8});
  // 0.45 < 0.5: the most likely token alone.
  expect_probs(distribution_of(with([](auto& p) { p.top_p = 0.45f; }), four_token_logits()),
               {0, 1, 0, 0});
}

TEST(Sampler, TopKKeepsTheKMostLikely) {
  expect_probs(distribution_of(with([](auto& p) { p.top_k = 3; }), four_token_logits()),
               {0.15 / 0.95, 0.5 / 0.95, 0, 0.3 / 0.95});
}

TEST(Sampler, TopPRenormalisesOverWhatTopKKept) {
  // Over all four, 0.5 + 0.3 = 0.8 < 0.82 would keep three; over top_k = 3, (0.5 + 0.3) / 0.95 =
  // 0.842 >= 0.82 keeps two.
  const auto params = with([](auto& p) {
    p.top_k = 3;
    p.top_p = 0.82f;
  });
  expect_probs(distribution_of(params, four_token_logits()), {0, 0.5 / 0.8, 0, 0.3 / 0.8});
}

TEST(Sampler, MinPDropsTokensBelowFractionOfMax) {
  // min_p = 0.2: threshold 0.1, token 2 (0.05) goes.
  expect_probs(distribution_of(with([](auto& p) { p.min_p = 0.2f; }), four_token_logits()),
               {0.15 / 0.95, 0.5 / 0.95, 0, 0.3 / 0.95});
  // min_p = 0.5: threshold 0.25, tokens 1 and 3 stay.
  expect_probs(distribution_of(with([](auto& p) { p.min_p = 0.5f; }), four_token_logits()),
               {0, 0.5 / 0.8, 0, 0.3 / 0.8});
}

TEST(Sampler, PenaltiesMatchHandComputedLogits) {
  const std::vector<float> logits = {1.0f, -1.0f, 0.5f, 2.0f, 0.0f};
  const std::vector<int32_t> prompt = {0, 1, 0};
  const std::vector<int32_t> output = {3, 2, 3};
  const auto params = with([](auto& p) {
    p.repetition_penalty = 1.5f;
    p.frequency_penalty = 0.25f;
    p.presence_penalty = 0.5f;
  });
  // token 0: prompt, 1.0 / 1.5.  token 1: prompt, -1.0 * 1.5.
  // token 2: 0.5 / 1.5 - (0.25 * 1 + 0.5).  token 3: 2.0 / 1.5 - (0.25 * 2 + 0.5).  token 4: as is.
  const std::vector<double> expected = {1.0 / 1.5, -1.5, 0.5 / 1.5 - 0.75, 2.0 / 1.5 - 1.0, 0.0};
  expect_probs(distribution_of(params, logits, prompt, output), softmax(expected));
}

TEST(Sampler, LogitBiasIsAddedBeforeThePenalties) {
  const std::vector<float> logits = {1.0f, -1.0f, 0.5f, 2.0f, 0.0f};
  const auto params = with([](auto& p) {
    p.logit_bias = {{1, 2.0f}, {3, -1.0f}};
    p.repetition_penalty = 1.5f;
  });
  // token 1: (-1 + 2) = 1 > 0, in the prompt: 1 / 1.5 (penalising the raw -1 would give -1.5).
  // token 3: 2 - 1 = 1. The others as they are.
  expect_probs(distribution_of(params, logits, {1}, {}), softmax({1.0, 1.0 / 1.5, 0.5, 1.0, 0.0}));
}

TEST(Sampler, LogitBiasBansAndForcesGreedyTokens) {
  SequenceSampler banned(with([](auto& p) {
    p.temperature = 0;
    p.logit_bias = {{1, -100.0f}};
  }));
  const std::vector<float> logits = {0.0f, 3.0f, -1.0f, 2.0f};
  EXPECT_EQ(banned.sample(logits, kNoIds, kNoIds).token_id, 3);
  SequenceSampler forced(with([](auto& p) {
    p.temperature = 0;
    p.logit_bias = {{2, 100.0f}};
  }));
  EXPECT_EQ(forced.sample(logits, kNoIds, kNoIds).token_id, 2);
}

TEST(Sampler, NegativePenaltiesEncourageRepeats) {
  const std::vector<float> logits = {0.0f, 0.0f};
  const auto params = with([](auto& p) { p.presence_penalty = -1.0f; });
  expect_probs(distribution_of(params, logits, {}, {1}), softmax({0.0, 1.0}));
}

TEST(Sampler, GreedyIsArgmaxLowestIdOnTies) {
  SequenceSampler sampler(with([](auto& p) { p.temperature = 0; }));
  EXPECT_EQ(sampler.sample(four_token_logits(), kNoIds, kNoIds).token_id, 1);
  const std::vector<float> tied = {0.0f, 3.0f, -1.0f, 3.0f};
  EXPECT_EQ(sampler.sample(tied, kNoIds, kNoIds).token_id, 1);
  // Penalties still apply: the prompt's token 1 falls to 1.5 under repetition_penalty 2.
  SequenceSampler penalised(with([](auto& p) {
    p.temperature = 0;
    p.repetition_penalty = 2;
  }));
  const std::vector<int32_t> prompt = {1};
  EXPECT_EQ(penalised.sample(tied, prompt, kNoIds).token_id, 3);
}

TEST(Sampler, TopKOneEqualsGreedy) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  SequenceSampler greedy(with([](auto& p) { p.temperature = 0; }));
  SequenceSampler top_one(with([](auto& p) { p.top_k = 1; }));
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<float> logits(1000);
    for (float& x : logits) x = normal(rng);
    const int32_t expected =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    EXPECT_EQ(greedy.sample(logits, kNoIds, kNoIds).token_id, expected);
    EXPECT_EQ(top_one.sample(logits, kNoIds, kNoIds).token_id, expected);
  }
}

// What steps 4-6 should keep, by a full sort: the reference the partial selections must match.
std::vector<double> reference_filters(const std::vector<float>& logits, int top_k, float top_p,
                                      float min_p) {
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  if (top_k > 0) order.resize(top_k);
  std::vector<double> kept_logits;
  for (int32_t id : order) kept_logits.push_back(logits[id]);
  std::vector<double> probs = softmax(kept_logits);
  size_t keep = top_p >= 1.0f ? probs.size() : 0;
  for (double cumulative = 0; keep < probs.size() && cumulative < top_p; ++keep)
    cumulative += probs[keep];
  while (keep > 1 && probs[keep - 1] < min_p * probs[0]) --keep;
  const double kept_mass = std::accumulate(probs.begin(), probs.begin() + keep, 0.0);
  std::vector<double> expected(logits.size(), 0.0);
  for (size_t i = 0; i < keep; ++i) expected[order[i]] = probs[i] / kept_mass;
  return expected;
}

// Large vocabulary, flat and peaked: the heap, pruning and bisection must agree with a full sort.
// The flat case keeps thousands of tokens under top_p, so the bisection runs many rounds.
TEST(Sampler, FiltersOnLargeVocabularyMatchFullSortReference) {
  struct Case {
    int top_k;
    float top_p;
    float min_p;
  };
  const Case cases[] = {{0, 0.9f, 0}, {0, 0.5f, 0},     {300, 1, 0},        {300, 0.5f, 0},
                        {0, 1, 0.3f}, {0, 0.95f, 0.1f}, {1000, 0.8f, 0.05f}};
  for (float scale : {0.5f, 4.0f}) {
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0.0f, scale);
    std::vector<float> logits(20000);
    for (float& x : logits) x = normal(rng);
    for (const Case& c : cases) {
      SCOPED_TRACE(testing::Message() << "scale " << scale << " top_k " << c.top_k << " top_p "
                                      << c.top_p << " min_p " << c.min_p);
      const auto params = with([&](auto& p) {
        p.top_k = c.top_k;
        p.top_p = c.top_p;
        p.min_p = c.min_p;
      });
      expect_probs(distribution_of(params, logits),
                   reference_filters(logits, c.top_k, c.top_p, c.min_p));
    }
  }
}

// ---- reproducibility ----------------------------------------------------------------------------

std::vector<float> flat_logits(size_t vocab) {
  std::vector<float> logits(vocab);
  for (size_t i = 0; i < vocab; ++i) logits[i] = 0.01f * static_cast<float>(i % 7);
  return logits;
}

std::vector<int32_t> draw_many(SequenceSampler& sampler, const std::vector<float>& logits,
                               int count) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < count; ++i) tokens.push_back(sampler.sample(logits, kNoIds, kNoIds).token_id);
  return tokens;
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferent) {
  const auto logits = flat_logits(50);
  SequenceSampler a(with([](auto& p) { p.seed = 42; }));
  SequenceSampler b(with([](auto& p) { p.seed = 42; }));
  SequenceSampler c(with([](auto& p) { p.seed = 43; }));
  const auto tokens_a = draw_many(a, logits, 200);
  EXPECT_EQ(tokens_a, draw_many(b, logits, 200));
  const auto tokens_c = draw_many(c, logits, 200);
  int same = 0;
  for (size_t i = 0; i < tokens_a.size(); ++i) same += tokens_a[i] == tokens_c[i];
  EXPECT_LT(same, 20);  // ~1/50 of 200 expected by chance
}

TEST(Sampler, UnseededSamplersGetDifferentSeeds) {
  SamplingParams params;
  SequenceSampler a(params), b(params);
  EXPECT_NE(a.seed(), b.seed());
  const auto logits = flat_logits(50);
  EXPECT_NE(draw_many(a, logits, 50), draw_many(b, logits, 50));
}

TEST(Sampler, SeededDrawsIndependentOfBatchComposition) {
  const auto logits = flat_logits(50);
  const auto params = with([](auto& p) {
    p.seed = 9;
    p.top_p = 0.9f;
  });
  SequenceSampler alone(params);
  const auto expected = draw_many(alone, logits, 100);
  // Interleaved with another sequence (different params, logits and penalties, sampled before
  // and after), as in a batch.
  SequenceSampler batched(params);
  SequenceSampler neighbour(with([](auto& p) {
    p.seed = 10;
    p.top_k = 5;
    p.frequency_penalty = 1;
  }));
  const auto other_logits = flat_logits(80);
  std::vector<int32_t> neighbour_output;
  std::vector<int32_t> tokens;
  for (int i = 0; i < 100; ++i) {
    neighbour_output.push_back(neighbour.sample(other_logits, kNoIds, neighbour_output).token_id);
    tokens.push_back(batched.sample(logits, kNoIds, kNoIds).token_id);
    if (i % 3 == 0) neighbour.sample(other_logits, kNoIds, neighbour_output);
  }
  EXPECT_EQ(tokens, expected);
}

TEST(Sampler, EmpiricalFrequenciesMatchDistribution) {
  const auto params = with([](auto& p) {
    p.seed = 1234;
    p.top_k = 3;  // {0.15, 0.5, 0, 0.3} / 0.95
  });
  SequenceSampler sampler(params);
  const auto logits = four_token_logits();
  const std::vector<double> target = {0.15 / 0.95, 0.5 / 0.95, 0.0, 0.3 / 0.95};
  const int draws = 20000;
  std::vector<int> counts(4, 0);
  for (int i = 0; i < draws; ++i) ++counts.at(sampler.sample(logits, kNoIds, kNoIds).token_id);
  for (size_t t = 0; t < 4; ++t) {
    EXPECT_NEAR(static_cast<double>(counts[t]) / draws, target[t], 0.02) << "token " << t;
  }
  EXPECT_EQ(counts[2], 0);
}

// ---- logprobs -----------------------------------------------------------------------------------

TEST(Sampler, LogprobsAreRawLogSoftmaxSortedBest) {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f, 0.0f};
  // Penalties, temperature and filters change what is drawn, not the reported logprobs.
  SequenceSampler sampler(with([](auto& p) {
    p.logprobs = 3;
    p.temperature = 0.7f;
    p.repetition_penalty = 1.3f;
    p.top_k = 4;
  }));
  const std::vector<int32_t> prompt = {1};
  const std::vector<double> raw = softmax({0.5, 2.0, -1.0, 2.0, 1.0, 0.0});
  for (int i = 0; i < 20; ++i) {
    const SampleResult result = sampler.sample(logits, prompt, kNoIds);
    EXPECT_NEAR(result.logprob, std::log(raw[result.token_id]), 1e-5);
    ASSERT_EQ(result.top_logprobs.size(), 3u);
    // Tied 2.0s: the lower id first.
    EXPECT_EQ(result.top_logprobs[0].token_id, 1);
    EXPECT_EQ(result.top_logprobs[1].token_id, 3);
    EXPECT_EQ(result.top_logprobs[2].token_id, 4);
    for (const TopLogprob& alternative : result.top_logprobs) {
      EXPECT_NEAR(alternative.logprob, std::log(raw[alternative.token_id]), 1e-5);
    }
  }
}

TEST(Sampler, NoLogprobsRequestedLeavesThemEmpty) {
  SequenceSampler sampler(with([](auto&) {}));
  const SampleResult result = sampler.sample(four_token_logits(), kNoIds, kNoIds);
  EXPECT_TRUE(result.top_logprobs.empty());
}

TEST(Sampler, NanLogitsAreAnError) {
  SequenceSampler sampler(with([](auto&) {}));
  const std::vector<float> logits = {0.0f, std::nanf(""), 1.0f};
  EXPECT_THROW(sampler.sample(logits, kNoIds, kNoIds), Error);
}

}  // namespace
}  // namespace tpserve::runtime
