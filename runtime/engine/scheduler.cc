#include "runtime/engine/scheduler.h"

#include <algorithm>

#include <fmt/format.h>

#include "common/check.h"

namespace tpserve::runtime {

Scheduler::Scheduler(const SchedulerOptions& options)
    : options_(options), allocator_(options.num_kv_blocks) {
  TPS_CHECK(options.max_logit_rows >= options.max_seqs, "max_logit_rows {} < max_seqs {}",
            options.max_logit_rows, options.max_seqs);
}

std::optional<std::string> Scheduler::never_fits(int64_t prompt_tokens, int64_t max_tokens) const {
  const int64_t total = prompt_tokens + max_tokens;
  if (total > options_.max_context) {
    return fmt::format("prompt ({} tokens) + max_tokens ({}) = {} exceeds the context length {}",
                       prompt_tokens, max_tokens, total, options_.max_context);
  }
  const int64_t capacity = static_cast<int64_t>(options_.num_kv_blocks) * options_.block_size;
  if (total > capacity) {
    return fmt::format("prompt ({} tokens) + max_tokens ({}) = {} exceeds the KV cache of {} "
                       "positions on each rank", prompt_tokens, max_tokens, total, capacity);
  }
  return std::nullopt;
}

void Scheduler::add(uint64_t id, std::vector<int32_t> prompt, int64_t max_tokens) {
  TPS_CHECK(!never_fits(static_cast<int64_t>(prompt.size()), max_tokens).has_value(),
            "sequence {} can never fit", id);
  ScheduledSequence sequence;
  sequence.id = id;
  sequence.reserved_tokens = static_cast<int64_t>(prompt.size()) + max_tokens;
  sequence.prompt_tokens = static_cast<int64_t>(prompt.size());
  sequence.tokens = std::move(prompt);
  waiting_.push_back(std::move(sequence));
}

void Scheduler::admit() {
  while (!waiting_.empty() && static_cast<int>(running_.size()) < options_.max_seqs) {
    ScheduledSequence& next = waiting_.front();
    auto blocks = allocator_.allocate(blocks_for(next.reserved_tokens, options_.block_size));
    if (!blocks) return;  // FCFS: later arrivals wait behind the head of the queue
    next.blocks = std::move(*blocks);
    running_.push_back(std::move(next));
    waiting_.pop_front();
  }
}

ScheduledStep Scheduler::schedule() {
  admit();
  ScheduledStep step;
  StepInput& input = step.input;
  int32_t max_blocks = 0;
  for (const ScheduledSequence& s : running_) {
    max_blocks = std::max<int32_t>(max_blocks, static_cast<int32_t>(s.blocks.size()));
  }
  input.max_blocks_per_seq = max_blocks;
  int budget = options_.max_tokens_per_step;
  int32_t row = 0;
  // Decode first (one token each, oldest sequences first if the budget is short), then prefill
  // chunks. A sequence decodes once everything but its newest token is cached.
  for (const bool decode_pass : {true, false}) {
    for (ScheduledSequence& s : running_) {
      const int64_t pending = static_cast<int64_t>(s.tokens.size()) - s.computed;
      const bool decoding = pending == 1 && s.computed > 0;
      if (budget == 0 || pending <= 0 || decode_pass != decoding) continue;
      const auto chunk = static_cast<int>(std::min<int64_t>(pending, budget));
      for (int i = 0; i < chunk; ++i) {
        input.token_ids.push_back(s.tokens[static_cast<size_t>(s.computed + i)]);
        input.token_seq.push_back(row);
        input.token_pos.push_back(static_cast<int32_t>(s.computed + i));
      }
      std::vector<int32_t> table = s.blocks;
      table.resize(static_cast<size_t>(max_blocks), 0);
      input.block_tables.insert(input.block_tables.end(), table.begin(), table.end());
      input.seq_prompt_len.push_back(static_cast<int32_t>(s.prompt_tokens));
      ++row;
      if (chunk == pending) {  // the step reaches the newest token: its logits predict the next
        input.logit_rows.push_back(static_cast<int32_t>(input.token_ids.size()) - 1);
        step.logit_seqs.push_back(s.id);
      }
      s.computed += chunk;  // the step writes these positions' K/V
      budget -= chunk;
    }
  }
  return step;
}

void Scheduler::append_token(uint64_t id, int32_t token) {
  for (ScheduledSequence& s : running_) {
    if (s.id != id) continue;
    s.tokens.push_back(token);
    TPS_CHECK(static_cast<int64_t>(s.tokens.size()) <= s.reserved_tokens,
              "sequence {} outgrew its reservation", id);
    return;
  }
  TPS_CHECK(false, "append_token: sequence {} is not running", id);
}

void Scheduler::remove(uint64_t id) {
  for (auto it = running_.begin(); it != running_.end(); ++it) {
    if (it->id == id) {
      allocator_.release(it->blocks);
      running_.erase(it);
      return;
    }
  }
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if (it->id == id) {
      waiting_.erase(it);
      return;
    }
  }
}

}  // namespace tpserve::runtime
