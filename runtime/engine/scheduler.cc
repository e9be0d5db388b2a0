#include "runtime/engine/scheduler.h"

#include <algorithm>

#include <fmt/format.h>

#include "common/check.h"
#include "runtime/engine/ngram_draft.h"

namespace tpserve::runtime {

namespace {

// Scheduling order: higher priority first, then earlier arrival.
bool runs_before(const ScheduledSequence& a, const ScheduledSequence& b) {
  if (a.priority != b.priority) return a.priority > b.priority;
  return a.arrival < b.arrival;
}

// A sequence decodes once everything but its newest token is cached.
bool decoding(const ScheduledSequence& s) {
  return static_cast<int64_t>(s.tokens.size()) - s.computed == 1 && s.computed > 0;
}

template <typename Container>
void insert_in_order(Container& sequences, ScheduledSequence sequence) {
  const auto at = std::upper_bound(sequences.begin(), sequences.end(), sequence,
                                   [](const ScheduledSequence& a, const ScheduledSequence& b) {
                                     return runs_before(a, b);
                                   });
  sequences.insert(at, std::move(sequence));
}

}  // namespace

Scheduler::Scheduler(const SchedulerOptions& options)
    : options_(options),
      watermark_blocks_(static_cast<int32_t>(options.watermark * options.num_kv_blocks)),
      allocator_(options.num_kv_blocks) {
  TPS_CHECK(options.max_logit_rows >= options.max_seqs, "max_logit_rows {} < max_seqs {}",
            options.max_logit_rows, options.max_seqs);
  TPS_CHECK(options.watermark >= 0 && options.watermark < 1, "watermark {} outside [0, 1)",
            options.watermark);
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

void Scheduler::add(uint64_t id, std::vector<int32_t> prompt, int64_t max_tokens,
                    int32_t priority) {
  TPS_CHECK(!never_fits(static_cast<int64_t>(prompt.size()), max_tokens).has_value(),
            "sequence {} can never fit", id);
  ScheduledSequence sequence;
  sequence.id = id;
  sequence.max_tokens = max_tokens;
  sequence.prompt_tokens = static_cast<int64_t>(prompt.size());
  sequence.priority = priority;
  sequence.arrival = arrivals_++;
  sequence.tokens = std::move(prompt);
  insert_in_order(waiting_, std::move(sequence));
}

// Publishes the sequence's full blocks whose K/V the steps so far have written.
void Scheduler::publish_computed(ScheduledSequence& s) {
  if (!options_.prefix_caching) return;
  const auto full = static_cast<size_t>(s.computed / options_.block_size);
  const auto size = static_cast<size_t>(options_.block_size);
  while (s.block_hashes.size() < full) {
    const size_t index = s.block_hashes.size();
    const uint64_t parent = index == 0 ? options_.adapter_id : s.block_hashes.back();
    const BlockKey key = block_key(parent, std::span(s.tokens).subspan(index * size, size));
    allocator_.publish(s.blocks[index], key);
    s.block_hashes.push_back(key.hash);
  }
}

void Scheduler::release(ScheduledSequence& s) {
  // Drafts of the last step beyond the tokens kept are not the sequence's K/V.
  s.computed = std::min<int64_t>(s.computed, static_cast<int64_t>(s.tokens.size()));
  s.drafts.clear();
  publish_computed(s);
  std::vector<int32_t> reversed(s.blocks.rbegin(), s.blocks.rend());
  allocator_.release(reversed);
  s.blocks.clear();
  s.block_hashes.clear();
  s.computed = 0;
}

void Scheduler::preempt(size_t running_index) {
  ScheduledSequence sequence = std::move(running_[running_index]);
  running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(running_index));
  release(sequence);
  ++counters_.preemptions;
  insert_in_order(waiting_, std::move(sequence));
}

// Leading full blocks of the sequence already in the cache, with references taken; never the
// block holding its last token, whose logits the next step needs.
std::vector<int32_t> Scheduler::take_prefix_hits(ScheduledSequence& s) {
  std::vector<int32_t> hits;
  if (!options_.prefix_caching) return hits;
  const auto size = static_cast<size_t>(options_.block_size);
  const size_t shareable = (s.tokens.size() - 1) / size;
  uint64_t parent = options_.adapter_id;
  for (size_t index = 0; index < shareable; ++index) {
    const BlockKey key = block_key(parent, std::span(s.tokens).subspan(index * size, size));
    const auto block = allocator_.take_cached(key);
    if (!block) break;
    hits.push_back(*block);
    s.block_hashes.push_back(key.hash);
    parent = key.hash;
  }
  return hits;
}

void Scheduler::admit() {
  while (!waiting_.empty() && static_cast<int>(running_.size()) < options_.max_seqs) {
    ScheduledSequence& next = waiting_.front();
    std::vector<int32_t> hits = take_prefix_hits(next);
    const auto tokens = static_cast<int64_t>(next.tokens.size());
    const int64_t holds = options_.admission == KvAdmission::kReserve
                              ? std::max(tokens, next.prompt_tokens + next.max_tokens)
                              : tokens;
    const int32_t needed = blocks_for(holds, options_.block_size) - static_cast<int32_t>(hits.size());
    // The watermark keeps room for running sequences to grow; an empty batch takes anything that
    // fits, or nothing would ever run.
    const int32_t keep = options_.admission == KvAdmission::kOnDemand && !running_.empty()
                             ? watermark_blocks_ : 0;
    if (allocator_.num_free() - needed < keep) {
      std::vector<int32_t> reversed(hits.rbegin(), hits.rend());
      allocator_.release(reversed);
      next.block_hashes.clear();
      return;  // FCFS: later arrivals wait behind the head of the queue
    }
    auto fresh = allocator_.allocate(needed);
    TPS_CHECK(fresh.has_value(), "{} blocks free but allocate({}) failed", allocator_.num_free(), needed);
    next.computed = static_cast<int64_t>(hits.size()) * options_.block_size;
    if (!next.admitted_before) {
      counters_.prefix_query_tokens += next.prompt_tokens;
      counters_.prefix_hit_tokens += next.computed;
      next.admitted_before = true;
    }
    next.blocks = std::move(hits);
    next.blocks.insert(next.blocks.end(), fresh->begin(), fresh->end());
    insert_in_order(running_, std::move(next));
    waiting_.pop_front();
  }
}

// Every running sequence gets the blocks its pending tokens need, front of the order first;
// when the pool runs dry the back of the order is preempted, down to the sequence itself.
bool Scheduler::grow_running() {
  bool preempted = false;
  for (size_t i = 0; i < running_.size(); ++i) {
    const auto needed = [&] {
      const ScheduledSequence& s = running_[i];
      return blocks_for(static_cast<int64_t>(s.tokens.size() + s.drafts.size()), options_.block_size) -
             static_cast<int32_t>(s.blocks.size());
    };
    if (needed() <= 0) continue;
    while (allocator_.num_free() < needed() && running_.size() - 1 > i) {
      preempt(running_.size() - 1);
      preempted = true;
    }
    if (allocator_.num_free() < needed()) {  // it is the last one left to take from
      preempt(i);
      return true;
    }
    auto fresh = allocator_.allocate(needed());
    running_[i].blocks.insert(running_[i].blocks.end(), fresh->begin(), fresh->end());
  }
  return preempted;
}

void Scheduler::propose_drafts() {
  for (ScheduledSequence& s : running_) {
    s.drafts.clear();
    if (options_.speculative_ngram <= 0 || !decoding(s)) continue;
    // Every draft accepted plus the token after them must stay within max_tokens.
    const int64_t room = s.prompt_tokens + s.max_tokens - static_cast<int64_t>(s.tokens.size()) - 1;
    const auto count = static_cast<int>(std::min<int64_t>(options_.speculative_ngram, room));
    s.drafts = ngram_draft(s.tokens, count);
  }
}

ScheduledStep Scheduler::schedule() {
  for (ScheduledSequence& s : running_) publish_computed(s);
  propose_drafts();
  if (!grow_running()) admit();
  ScheduledStep step;
  build(step);
  return step;
}

void Scheduler::build(ScheduledStep& step) {
  StepInput& input = step.input;
  int32_t max_blocks = 0;
  int decoders = 0;
  for (const ScheduledSequence& s : running_) {
    max_blocks = std::max<int32_t>(max_blocks, static_cast<int32_t>(s.blocks.size()));
    decoders += decoding(s);
  }
  input.max_blocks_per_seq = max_blocks;
  int budget = options_.max_tokens_per_step;
  // Drafts take only what one token and one logit row for every running sequence leave.
  int draft_budget = std::max(0, budget - decoders);
  int draft_rows = options_.max_logit_rows - static_cast<int>(running_.size());
  int32_t row = 0;
  // Decode first (one token each, plus drafts; front of the order first if the budget is short),
  // then prefill chunks. A sequence decodes once everything but its newest token is cached.
  for (const bool decode_pass : {true, false}) {
    for (ScheduledSequence& s : running_) {
      const int64_t pending = static_cast<int64_t>(s.tokens.size()) - s.computed;
      if (budget == 0 || pending <= 0 || decode_pass != decoding(s)) continue;
      const auto drafts = static_cast<int>(std::min<size_t>(
          s.drafts.size(), static_cast<size_t>(std::min(draft_budget, draft_rows))));
      s.drafts.resize(static_cast<size_t>(drafts));
      draft_budget -= drafts;
      draft_rows -= drafts;
      counters_.draft_tokens += drafts;
      const auto chunk = static_cast<int>(std::min<int64_t>(pending, budget));
      for (int i = 0; i < chunk + drafts; ++i) {
        const auto at = static_cast<size_t>(s.computed + i);
        input.token_ids.push_back(i < chunk ? s.tokens[at] : s.drafts[static_cast<size_t>(i - chunk)]);
        input.token_seq.push_back(row);
        input.token_pos.push_back(static_cast<int32_t>(at));
      }
      std::vector<int32_t> table = s.blocks;
      table.resize(static_cast<size_t>(max_blocks), 0);
      input.block_tables.insert(input.block_tables.end(), table.begin(), table.end());
      input.seq_prompt_len.push_back(static_cast<int32_t>(s.prompt_tokens));
      ++row;
      if (chunk == pending) {  // the step reaches the newest token: its logits predict the next
        // With drafts, the newest token's row verifies the first draft, and so on; the last
        // row predicts the token after them all.
        const auto first = static_cast<int32_t>(input.token_ids.size()) - drafts - 1;
        for (int i = 0; i <= drafts; ++i) {
          input.logit_rows.push_back(first + i);
          step.logit_seqs.push_back(s.id);
          step.logit_drafts.push_back(i < drafts ? s.drafts[static_cast<size_t>(i)] : -1);
        }
      }
      s.computed += chunk + drafts;  // the step writes these positions' K/V
      budget -= chunk + drafts;
    }
  }
}

void Scheduler::append_tokens(uint64_t id, std::span<const int32_t> tokens) {
  for (ScheduledSequence& s : running_) {
    if (s.id != id) continue;
    s.tokens.insert(s.tokens.end(), tokens.begin(), tokens.end());
    TPS_CHECK(static_cast<int64_t>(s.tokens.size()) <= s.prompt_tokens + s.max_tokens,
              "sequence {} outgrew prompt + max_tokens", id);
    // The newest token has no K/V yet; nor have drafts rejected before it.
    s.computed = std::min<int64_t>(s.computed, static_cast<int64_t>(s.tokens.size()) - 1);
    s.drafts.clear();
    return;
  }
  TPS_CHECK(false, "append_tokens: sequence {} is not running", id);
}

void Scheduler::remove(uint64_t id) {
  for (auto it = running_.begin(); it != running_.end(); ++it) {
    if (it->id == id) {
      release(*it);
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
