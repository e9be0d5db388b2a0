#include "runtime/engine/greedy.h"

#include <algorithm>
#include <chrono>

#include "common/check.h"
#include "runtime/engine/block_allocator.h"

namespace tpserve::runtime {

namespace {

using Clock = std::chrono::steady_clock;

// Rank 0: prefill in chunks of the step budget, then one token per step.
std::vector<int32_t> decide(Model& model, parallel::Communicator& comm,
                            const std::vector<int32_t>& prompt, const GreedyOptions& options,
                            GreedyTimings* timings) {
  const ModelOptions& model_options = model.options();
  BlockAllocator allocator(model_options.num_kv_blocks);
  const int64_t total = static_cast<int64_t>(prompt.size()) + options.max_tokens;
  auto blocks = allocator.allocate(blocks_for(total, model_options.block_size));
  TPS_CHECK(blocks.has_value(), "{} positions do not fit {} KV blocks of {}", total,
            model_options.num_kv_blocks, model_options.block_size);
  std::vector<int32_t> sequence = prompt;
  std::vector<int32_t> generated;
  std::vector<float> logits;
  int64_t next_position = 0;
  auto start = Clock::now();
  while (static_cast<int>(generated.size()) < options.max_tokens) {
    StepInput step;
    step.block_tables = *blocks;
    step.max_blocks_per_seq = static_cast<int32_t>(blocks->size());
    step.seq_prompt_len = {static_cast<int32_t>(prompt.size())};
    const int64_t pending = static_cast<int64_t>(sequence.size()) - next_position;
    const int64_t chunk = std::min<int64_t>(pending, model_options.max_tokens_per_step);
    for (int64_t i = 0; i < chunk; ++i) {
      step.token_ids.push_back(sequence[static_cast<size_t>(next_position + i)]);
      step.token_seq.push_back(0);
      step.token_pos.push_back(static_cast<int32_t>(next_position + i));
    }
    next_position += chunk;
    const bool last_chunk = next_position == static_cast<int64_t>(sequence.size());
    if (last_chunk) step.logit_rows.push_back(static_cast<int32_t>(chunk - 1));
    broadcast_step(comm, step);
    model.forward(step, logits);
    if (!last_chunk) continue;
    const auto token = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) -
                                            logits.begin());
    if (timings != nullptr) {
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      if (generated.empty()) {
        timings->prefill_s = seconds;
      } else {
        timings->decode_s.push_back(seconds);
      }
    }
    start = Clock::now();
    generated.push_back(token);
    sequence.push_back(token);
    const auto& stop = options.stop_token_ids;
    if (std::find(stop.begin(), stop.end(), token) != stop.end()) break;
  }
  StepInput stop;
  stop.stop = true;
  broadcast_step(comm, stop);
  return generated;
}

// Other ranks: run whatever rank 0 broadcasts until it says stop.
void follow(Model& model, parallel::Communicator& comm) {
  std::vector<float> logits;
  for (;;) {
    StepInput step;
    broadcast_step(comm, step);
    if (step.stop) return;
    model.forward(step, logits);
  }
}

}  // namespace

std::vector<int32_t> generate_greedy(Model& model, parallel::Communicator& comm,
                                     const std::vector<int32_t>& prompt,
                                     const GreedyOptions& options, GreedyTimings* timings) {
  if (comm.rank() != 0) {
    follow(model, comm);
    return {};
  }
  return decide(model, comm, prompt, options, timings);
}

}  // namespace tpserve::runtime
