// Request validation (runtime/engine/sampling_params.cc): every field a gRPC request or a batch
// line can set, from raw bytes (NaN, infinities, negative and huge counts, any stop bytes), either
// passes validate() or raises tpserve::Error; a request that passes is inside every documented
// range, checked here again independently.
#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "common/error.h"
#include "runtime/engine/sampling_params.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

void require(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "validate() passed a request with %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tpserve::runtime;
  FuzzedDataProvider input(data, size);
  SamplingLimits limits;
  limits.vocab_size = input.ConsumeIntegralInRange<int32_t>(1, 1 << 20);
  SamplingParams p;
  p.temperature = input.ConsumeFloatingPoint<float>();
  p.top_k = input.ConsumeIntegral<int32_t>();
  p.top_p = input.ConsumeFloatingPoint<float>();
  p.min_p = input.ConsumeFloatingPoint<float>();
  p.repetition_penalty = input.ConsumeFloatingPoint<float>();
  p.presence_penalty = input.ConsumeFloatingPoint<float>();
  p.frequency_penalty = input.ConsumeFloatingPoint<float>();
  if (input.ConsumeBool()) p.seed = input.ConsumeIntegral<uint64_t>();
  p.max_tokens = input.ConsumeIntegral<int32_t>();
  p.ignore_eos = input.ConsumeBool();
  p.n = input.ConsumeIntegral<int32_t>();
  p.logprobs = input.ConsumeIntegral<int32_t>();
  const int stops = input.ConsumeIntegralInRange(0, 20);
  for (int i = 0; i < stops; ++i) p.stop.push_back(input.ConsumeRandomLengthString(300));
  const int stop_ids = input.ConsumeIntegralInRange(0, 8);
  for (int i = 0; i < stop_ids; ++i) p.stop_token_ids.push_back(input.ConsumeIntegral<int32_t>());
  try {
    validate(p, limits);
  } catch (const tpserve::Error&) {
    return 0;
  }
  require(std::isfinite(p.temperature) && p.temperature >= 0, "a bad temperature");
  require(p.top_p > 0 && p.top_p <= 1, "a bad top_p");
  require(p.top_k >= 0 && p.top_k <= limits.vocab_size, "a bad top_k");
  require(p.min_p >= 0 && p.min_p <= 1, "a bad min_p");
  require(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0, "a bad repetition_penalty");
  require(p.n >= 1 && p.n <= limits.max_n && p.max_tokens >= 1, "a bad n or max_tokens");
  require(p.logprobs >= 0 && p.logprobs <= limits.max_logprobs, "bad logprobs");
  require(p.stop.size() <= static_cast<size_t>(limits.max_stop), "too many stops");
  for (const std::string& stop : p.stop) require(!stop.empty() && stop.size() <= 256, "a bad stop length");
  for (int32_t id : p.stop_token_ids) require(id >= 0 && id < limits.vocab_size, "a stop id outside the vocabulary");
  return 0;
}
