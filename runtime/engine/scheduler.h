// Continuous batching on rank 0: which sequences run in the next step, and how many of their
// tokens. Sequences join and leave between steps; each step spends a token budget on one decode
// token for every running sequence first, then on (chunked) prefill of sequences whose prompt is
// not yet in the KV cache, oldest first.
//
// Admission policy: reservation. A sequence is admitted only when KV blocks for its whole
// prompt + max_tokens are free, and it keeps them until it finishes. Nothing is ever preempted,
// so a running sequence's latency never depends on later arrivals, at the cost of admitting fewer
// sequences than optimistic allocation (vLLM's preempt-by-recompute) would when outputs end early.
// A sequence that could not fit even in an empty cache is refused at submission.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <vector>

#include "runtime/engine/block_allocator.h"
#include "runtime/model/step.h"

namespace tpserve::runtime {

struct SchedulerOptions {
  int32_t num_kv_blocks = 0;
  int32_t block_size = 16;
  int max_tokens_per_step = 256;  // token budget of one step
  int max_seqs = 64;              // sequences in one step (running set size)
  int max_logit_rows = 64;        // must be >= max_seqs
  int64_t max_context = 0;        // positions per sequence (ModelConfig::max_position_embeddings)
};

// One sequence as the scheduler sees it: tokens so far and how many of them are in the cache.
struct ScheduledSequence {
  uint64_t id = 0;
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int64_t computed = 0;         // leading tokens whose K/V are cached
  int64_t reserved_tokens = 0;  // prompt + max_tokens
  int64_t prompt_tokens = 0;
  std::vector<int32_t> blocks;
};

// The step to run and, for each logit row, the sequence whose next token it predicts.
struct ScheduledStep {
  StepInput input;
  std::vector<uint64_t> logit_seqs;
};

class Scheduler {
 public:
  explicit Scheduler(const SchedulerOptions& options);

  // Why a sequence can never be admitted (too long for the context or for the whole KV pool), or
  // nullopt when it could.
  std::optional<std::string> never_fits(int64_t prompt_tokens, int64_t max_tokens) const;

  // Queues a sequence (FCFS). Its id must be new.
  void add(uint64_t id, std::vector<int32_t> prompt, int64_t max_tokens);

  // Builds the next step, admitting waiting sequences while blocks and slots allow. Empty input
  // when nothing can run.
  ScheduledStep schedule();

  // After the step: the sampled token of a sequence that got a logit row.
  void append_token(uint64_t id, int32_t token);

  // Removes a sequence (finished, cancelled or failed) wherever it is; frees its blocks.
  void remove(uint64_t id);

  bool has_work() const { return !waiting_.empty() || !running_.empty(); }
  size_t num_waiting() const { return waiting_.size(); }
  size_t num_running() const { return running_.size(); }
  int32_t blocks_used() const { return allocator_.num_used(); }
  int32_t blocks_total() const { return allocator_.num_blocks(); }

 private:
  void admit();

  SchedulerOptions options_;
  BlockAllocator allocator_;
  std::deque<ScheduledSequence> waiting_;
  std::vector<ScheduledSequence> running_;  // in admission order
};

}  // namespace tpserve::runtime
