// Greedy generation of one sequence across the ranks: rank 0 decides every step (the tokens, their
// positions and KV blocks, when to stop) and broadcasts it; every rank runs it on its shard. The
// continuous-batching engine generalises this loop to many sequences.
#pragma once

#include <cstdint>
#include <vector>

#include "parallel/communicator.h"
#include "runtime/model/model.h"

namespace tpserve::runtime {

struct GreedyOptions {
  int max_tokens = 16;
  std::vector<int32_t> stop_token_ids;  // generation ends after emitting one of these
};

struct GreedyTimings {
  double prefill_s = 0;           // prompt in, first token out
  std::vector<double> decode_s;   // each later token
};

// Called on every rank with the same prompt and options. Returns the generated ids on rank 0 and
// an empty vector elsewhere. The prompt must already be validated (ids in the vocabulary, prompt +
// max_tokens within the model's KV blocks).
std::vector<int32_t> generate_greedy(Model& model, parallel::Communicator& comm,
                                     const std::vector<int32_t>& prompt,
                                     const GreedyOptions& options, GreedyTimings* timings = nullptr);

}  // namespace tpserve::runtime
