// Continuous batching on rank 0: which sequences run in the next step, and how many of their
// tokens. Sequences join and leave between steps; each step spends a token budget on one decode
// token for every running sequence first, then on (chunked) prefill of sequences whose tokens are
// not yet in the KV cache, in order.
//
// Order: higher priority first, then first come first served. Running sequences are kept in that
// order; decode budget and KV blocks go to the front of it, and preemption takes from the back.
//
// KV admission policy:
//   on-demand (default, vLLM's): a sequence is admitted when blocks for the tokens it has now
//     (prompt, plus what it generated before a preemption) are free, keeping a watermark of free
//     blocks so that running sequences can grow; a running sequence takes one more block whenever
//     it crosses a block boundary. When none is left, the last running sequence (newest, lowest
//     priority) is preempted by recompute: its blocks are released (full ones stay in the prefix
//     cache) and it goes back to the head of its place in the waiting queue, to be prefilled
//     again from its prompt and generated tokens. Its sampler state lives in the engine, so
//     it resumes with the same tokens as an unpreempted run. No new sequence is admitted in a step
//     that preempted one, so the older sequences make progress first.
//   reserve: admitted only when blocks for prompt + max_tokens are free, kept until it finishes;
//     nothing is ever preempted, at the cost of admitting fewer sequences when outputs end early.
// A sequence that could not fit even in an empty cache is refused at submission.
//
// N-gram speculation (prompt lookup, speculative_ngram = K > 0): a decoding sequence whose last
// n tokens (n = 3, 2, then 1) occurred earlier in its own tokens drafts the (up to K) tokens that
// followed that occurrence. The step then carries its newest token and the drafts, with a logit
// row for each; the engine samples row by row and keeps drafts while they equal what was sampled
// (Engine::sample_rows). append_tokens() moves `computed` back past the K/V of rejected drafts, which
// the next step overwrites.
//
// Prefix caching: every full block of a sequence whose K/V have been computed is published under
// the hash of its tokens and every token before them (block_allocator.h). A sequence admitted
// later whose leading blocks match takes those blocks (shared, reference-counted) and starts its
// prefill after them. The last prompt token is always recomputed, since its logits are needed;
// so a block is only shared when the sequence has a token past it, and a shared block is never
// written again.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "runtime/engine/block_allocator.h"
#include "runtime/model/step.h"

namespace tpserve::runtime {

enum class KvAdmission { kOnDemand, kReserve };

struct SchedulerOptions {
  int32_t num_kv_blocks = 0;
  int32_t block_size = 16;
  int max_tokens_per_step = 256;  // token budget of one step
  int max_seqs = 64;              // sequences in one step (running set size)
  int max_logit_rows = 64;        // must be >= max_seqs
  int64_t max_context = 0;        // positions per sequence (ModelConfig::max_position_embeddings)
  KvAdmission admission = KvAdmission::kOnDemand;
  // On-demand: fraction of the pool left free when admitting, so that running sequences can
  // grow before one has to be preempted (vLLM's watermark, 0.01 there too).
  double watermark = 0.01;
  bool prefix_caching = true;
  uint64_t adapter_id = 0;  // the weights' identity (a merged LoRA): blocks 0's parent key
  int speculative_ngram = 0;  // drafts per decoding sequence and step (0: off)
};

// One sequence as the scheduler sees it: tokens so far and how many of them are in the cache.
struct ScheduledSequence {
  uint64_t id = 0;
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int64_t computed = 0;         // leading tokens whose K/V are cached
  int64_t max_tokens = 0;
  int64_t prompt_tokens = 0;
  int32_t priority = 0;
  uint64_t arrival = 0;         // add() order
  bool admitted_before = false;
  std::vector<int32_t> blocks;
  std::vector<uint64_t> block_hashes;  // keys of its leading full blocks already in the cache
  std::vector<int32_t> drafts;         // n-gram drafts proposed for the next step
};

// The step to run and, for each logit row, the sequence whose next token it predicts and the
// draft token that row verifies (-1: none; the row's sample is the sequence's next token).
// A sequence's rows are consecutive.
struct ScheduledStep {
  StepInput input;
  std::vector<uint64_t> logit_seqs;
  std::vector<int32_t> logit_drafts;
};

struct SchedulerCounters {
  int64_t preemptions = 0;
  int64_t prefix_query_tokens = 0;  // prompt tokens of admitted sequences (first admission)
  int64_t prefix_hit_tokens = 0;    // of those, tokens whose K/V came from the prefix cache
  int64_t draft_tokens = 0;         // n-gram drafts sent to be verified
};

class Scheduler {
 public:
  explicit Scheduler(const SchedulerOptions& options);

  // Why a sequence can never be admitted (too long for the context or for the whole KV pool), or
  // nullopt when it could.
  std::optional<std::string> never_fits(int64_t prompt_tokens, int64_t max_tokens) const;

  // Queues a sequence behind those of its priority or higher. Its id must be new.
  void add(uint64_t id, std::vector<int32_t> prompt, int64_t max_tokens, int32_t priority = 0);

  // Builds the next step: grows running sequences (preempting when blocks run out), admits
  // waiting ones while blocks and slots allow. Empty input when nothing can run.
  ScheduledStep schedule();

  // After the step: the tokens a sequence that got logit rows keeps, in order (with drafts: the
  // accepted ones, then the token sampled after them). One call per sequence and step.
  void append_tokens(uint64_t id, std::span<const int32_t> tokens);
  void append_token(uint64_t id, int32_t token) { append_tokens(id, std::span(&token, 1)); }

  // Removes a sequence (finished, cancelled or failed) wherever it is; frees its blocks.
  void remove(uint64_t id);

  bool has_work() const { return !waiting_.empty() || !running_.empty(); }
  size_t num_waiting() const { return waiting_.size(); }
  size_t num_running() const { return running_.size(); }
  int32_t blocks_used() const { return allocator_.num_used(); }
  int32_t blocks_total() const { return allocator_.num_blocks(); }
  int32_t blocks_cached() const { return allocator_.num_cached(); }
  const SchedulerCounters& counters() const { return counters_; }
  // For tests: the sequences in order, and the allocator.
  const std::vector<ScheduledSequence>& running() const { return running_; }
  const std::deque<ScheduledSequence>& waiting() const { return waiting_; }
  const BlockAllocator& allocator() const { return allocator_; }

 private:
  void propose_drafts();
  bool grow_running();  // true when a sequence was preempted
  void admit();
  std::vector<int32_t> take_prefix_hits(ScheduledSequence& sequence);
  void publish_computed(ScheduledSequence& sequence);
  void release(ScheduledSequence& sequence);
  void preempt(size_t running_index);
  void enqueue(ScheduledSequence sequence);
  void build(ScheduledStep& step);

  SchedulerOptions options_;
  int32_t watermark_blocks_ = 0;
  BlockAllocator allocator_;
  std::deque<ScheduledSequence> waiting_;
  std::vector<ScheduledSequence> running_;
  uint64_t arrivals_ = 0;
  SchedulerCounters counters_;
};

}  // namespace tpserve::runtime
