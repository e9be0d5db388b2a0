// Sampling parameters' validation: every rejected field, its error code, and a message naming it.
#include "runtime/engine/sampling_params.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "common/error.h"

namespace tpserve::runtime {
namespace {

struct BadParams {
  const char* field;  // must appear in the message
  std::function<void(SamplingParams&)> change;
  ErrorCode code;
};

TEST(SamplingParamsValidate, AcceptsDefaultsAndEdges) {
  const SamplingLimits limits{.vocab_size = 100};
  SamplingParams params;
  EXPECT_NO_THROW(validate(params, limits));
  params.temperature = 0;
  params.top_p = 1;
  params.top_k = 100;
  params.min_p = 1;
  params.presence_penalty = -2;
  params.frequency_penalty = 2;
  params.n = 16;
  params.logprobs = 20;
  params.stop = {std::string(256, 'x')};
  params.stop_token_ids = {0, 99};
  params.logit_bias = {{0, -100.0f}, {99, 100.0f}};
  EXPECT_NO_THROW(validate(params, limits));
}

TEST(SamplingParamsValidate, RejectsEachBadFieldNamingIt) {
  const float nan = std::nanf("");
  const float inf = INFINITY;
  const auto invalid = ErrorCode::kInvalidArgument;
  const auto range = ErrorCode::kOutOfRange;
  const std::vector<BadParams> cases = {
      {"temperature", [](auto& p) { p.temperature = -0.5f; }, invalid},
      {"temperature", [=](auto& p) { p.temperature = nan; }, invalid},
      {"temperature", [=](auto& p) { p.temperature = inf; }, invalid},
      {"top_p", [](auto& p) { p.top_p = 0; }, invalid},
      {"top_p", [](auto& p) { p.top_p = 1.5f; }, invalid},
      {"top_p", [=](auto& p) { p.top_p = nan; }, invalid},
      {"top_k", [](auto& p) { p.top_k = -1; }, invalid},
      {"top_k", [](auto& p) { p.top_k = 101; }, range},
      {"min_p", [](auto& p) { p.min_p = -0.1f; }, invalid},
      {"min_p", [](auto& p) { p.min_p = 1.1f; }, invalid},
      {"min_p", [=](auto& p) { p.min_p = nan; }, invalid},
      {"repetition_penalty", [](auto& p) { p.repetition_penalty = 0; }, invalid},
      {"repetition_penalty", [](auto& p) { p.repetition_penalty = -1; }, invalid},
      {"repetition_penalty", [=](auto& p) { p.repetition_penalty = inf; }, invalid},
      {"repetition_penalty", [=](auto& p) { p.repetition_penalty = nan; }, invalid},
      {"presence_penalty", [](auto& p) { p.presence_penalty = 2.5f; }, invalid},
      {"presence_penalty", [=](auto& p) { p.presence_penalty = nan; }, invalid},
      {"presence_penalty", [=](auto& p) { p.presence_penalty = -inf; }, invalid},
      {"frequency_penalty", [](auto& p) { p.frequency_penalty = -2.5f; }, invalid},
      {"frequency_penalty", [=](auto& p) { p.frequency_penalty = nan; }, invalid},
      {"n must", [](auto& p) { p.n = 0; }, invalid},
      {"n must", [](auto& p) { p.n = 17; }, range},
      {"logprobs", [](auto& p) { p.logprobs = -1; }, invalid},
      {"logprobs", [](auto& p) { p.logprobs = 21; }, range},
      {"max_tokens", [](auto& p) { p.max_tokens = 0; }, invalid},
      {"max_tokens", [](auto& p) { p.max_tokens = -5; }, invalid},
      {"stop[1]",
       [](auto& p) {
         p.stop = {"a", ""};
       },
       invalid},
      {"stop: at most 16", [](auto& p) { p.stop.assign(17, "x"); }, range},
      {"stop[0]", [](auto& p) { p.stop = {std::string(257, 'x')}; }, range},
      {"stop_token_ids[1]",
       [](auto& p) {
         p.stop_token_ids = {5, 100};
       },
       range},
      {"stop_token_ids[0]", [](auto& p) { p.stop_token_ids = {-1}; }, range},
      {"logit_bias", [](auto& p) { p.logit_bias = {{100, 1.0f}}; }, range},
      {"logit_bias", [](auto& p) { p.logit_bias = {{-1, 1.0f}}; }, range},
      {"logit_bias", [](auto& p) { p.logit_bias = {{5, 100.5f}}; }, invalid},
      {"logit_bias", [=](auto& p) { p.logit_bias = {{5, nan}}; }, invalid},
      {"logit_bias", [](auto& p) { p.logit_bias.assign(301, {1, 0.0f}); }, range},
  };
  const SamplingLimits limits{.vocab_size = 100};
  for (const BadParams& bad : cases) {
    SamplingParams params;
    bad.change(params);
    try {
      validate(params, limits);
      ADD_FAILURE() << bad.field << ": accepted";
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), bad.code) << error.what();
      EXPECT_NE(std::string(error.what()).find(bad.field), std::string::npos) << error.what();
    }
  }
}

// A stop string is matched against decoded text, which is valid UTF-8: one that is not could never
// match (issue 12), so it is refused naming the field.
TEST(SamplingParamsValidate, StopStringsMustBeUtf8) {
  for (const std::string bad : {"\xff", "ab\xC3", "\xED\xA0\x80"}) {
    SamplingParams params;
    params.stop = {"fine", bad};
    try {
      validate(params, SamplingLimits{.vocab_size = 100});
      ADD_FAILURE() << "accepted";
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument) << error.what();
      EXPECT_NE(std::string(error.what()).find("stop[1]"), std::string::npos) << error.what();
      EXPECT_NE(std::string(error.what()).find("UTF-8"), std::string::npos) << error.what();
    }
  }
}

TEST(SamplingParamsValidate, MessageCarriesTheValue) {
  SamplingParams params;
  params.stop_token_ids = {12345};
  try {
    validate(params, SamplingLimits{.vocab_size = 100});
    FAIL() << "accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("12345"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("100"), std::string::npos) << error.what();
  }
}

// generation_config.json over vLLM's defaults (vLLM's get_diff_sampling_param does the same
// with the fields a checkpoint sets); do_sample false is transformers' greedy search.
TEST(SamplingDefaults, WithoutAGenerationConfigTheyAreVllms) {
  const SamplingParams d = sampling_defaults(GenerationConfig{}, 512);
  const SamplingParams vllm;
  EXPECT_EQ(d.temperature, 1.0f);
  EXPECT_EQ(d.top_k, 0);
  EXPECT_EQ(d.top_p, 1.0f);
  EXPECT_EQ(d.min_p, 0.0f);
  EXPECT_EQ(d.repetition_penalty, 1.0f);
  EXPECT_EQ(d.max_tokens, vllm.max_tokens);
}

TEST(SamplingDefaults, GenerationConfigFieldsOverrideOnlyWhatTheySet) {
  GenerationConfig g;
  g.present = true;
  g.do_sample = true;
  g.temperature = 0.7f;
  g.top_p = 0.8f;
  g.top_k = 20;
  g.repetition_penalty = 1.05f;
  const SamplingParams d = sampling_defaults(g, 512);
  EXPECT_FLOAT_EQ(d.temperature, 0.7f);
  EXPECT_FLOAT_EQ(d.top_p, 0.8f);
  EXPECT_EQ(d.top_k, 20);
  EXPECT_FLOAT_EQ(d.repetition_penalty, 1.05f);
  EXPECT_EQ(d.min_p, 0.0f);          // unset in the file
  EXPECT_EQ(d.max_tokens, 16);       // not a generation_config.json default tpserve applies
  EXPECT_NO_THROW(validate(d, {.vocab_size = 512}));
}

TEST(SamplingDefaults, DoSampleFalseIsGreedyWhateverTheTemperature) {
  GenerationConfig g;
  g.do_sample = false;
  g.temperature = 0.6f;
  g.top_p = 0.9f;
  const SamplingParams d = sampling_defaults(g, 512);
  EXPECT_EQ(d.temperature, 0.0f);
  // Without do_sample the file's temperature stands (vLLM reads it regardless of do_sample).
  g.do_sample.reset();
  EXPECT_FLOAT_EQ(sampling_defaults(g, 512).temperature, 0.6f);
}

TEST(SamplingDefaults, TopKAtOrAboveTheVocabularyIsOff) {
  GenerationConfig g;
  g.top_k = 50;  // transformers' GenerationConfig default, larger than a tiny fixture's vocab
  EXPECT_EQ(sampling_defaults(g, 32).top_k, 0);
  EXPECT_EQ(sampling_defaults(g, 50).top_k, 0);
  EXPECT_EQ(sampling_defaults(g, 51).top_k, 50);
  EXPECT_NO_THROW(validate(sampling_defaults(g, 32), {.vocab_size = 32}));
}

}  // namespace
}  // namespace tpserve::runtime
