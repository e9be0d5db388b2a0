// KV on demand, preemption and prefix caching in the scheduler, against a simulated KV cache:
// every step writes (token, position) into the slots its block tables name, and a sequence's
// "model" output reads its whole context back through its own block table. A wrong table, a
// shared block written again, or a block freed while in use shows up as a context that is not the
// sequence's own tokens. Outputs are then compared with a run that had room for everything.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <random>
#include <set>

#include "runtime/engine/block_allocator.h"
#include "runtime/engine/ngram_draft.h"
#include "runtime/engine/scheduler.h"

namespace tpserve::runtime {
namespace {

struct Slot {
  int32_t token = -1;
  int32_t position = -1;
};

// The engine and model around a Scheduler: sequences with a max_tokens each, a next token that
// is a function of the sequence's cached context, finished sequences' outputs.
class SimulatedEngine {
 public:
  explicit SimulatedEngine(const SchedulerOptions& options)
      : options_(options), scheduler_(options),
        cache_(static_cast<size_t>(options.num_kv_blocks * options.block_size)) {}

  void add(uint64_t id, std::vector<int32_t> prompt, int64_t max_tokens, int32_t priority = 0) {
    prompts_[id] = prompt;
    max_tokens_[id] = max_tokens;
    scheduler_.add(id, std::move(prompt), max_tokens, priority);
  }

  // One step; false when nothing ran.
  bool step() {
    ScheduledStep step = scheduler_.schedule();
    check_invariants();
    const StepInput& input = step.input;
    if (input.num_tokens() == 0) return false;
    ++steps_;
    for (int t = 0; t < input.num_tokens(); ++t) {
      slot(input, input.token_seq[t], input.token_pos[t]) = {input.token_ids[t], input.token_pos[t]};
    }
    std::vector<int32_t> kept;
    for (size_t row = 0; row < step.logit_seqs.size(); ++row) {
      const int t = input.logit_rows[row];
      const uint64_t id = step.logit_seqs[row];
      if (row == 0 || step.logit_seqs[row - 1] != id) kept.clear();
      if (finished_.contains(id)) continue;
      // The context this sequence sees: positions 0..pos through its block table.
      std::vector<int32_t> context;
      for (int32_t pos = 0; pos <= input.token_pos[t]; ++pos) {
        const Slot& s = slot(input, input.token_seq[t], pos);
        EXPECT_EQ(s.position, pos) << "sequence " << id << " reads a slot written for another position";
        context.push_back(s.token);
      }
      std::vector<int32_t> expected = prompts_[id];
      expected.insert(expected.end(), outputs_[id].begin(), outputs_[id].end());
      EXPECT_EQ(context, expected) << "sequence " << id << " reads a context not its own";
      const int32_t token = next_token(context);
      outputs_[id].push_back(token);
      if (static_cast<int64_t>(outputs_[id].size()) >= max_tokens_[id]) {
        scheduler_.remove(id);
        finished_.insert(id);
        continue;
      }
      kept.push_back(token);
      const int32_t draft = step.logit_drafts[row];
      accepted_ += draft == token;
      const bool more_rows = row + 1 < step.logit_seqs.size() && step.logit_seqs[row + 1] == id;
      if (draft == token && more_rows) continue;
      scheduler_.append_tokens(id, kept);
      while (row + 1 < step.logit_seqs.size() && step.logit_seqs[row + 1] == id) ++row;
    }
    return true;
  }

  // The "model": a hash of the whole context, or (cyclic_) of its last two tokens, whose
  // continuations repeat so that n-gram drafts get accepted.
  int32_t next_token(const std::vector<int32_t>& context) const {
    if (cyclic_) {
      const int32_t a = context.back();
      const int32_t b = context.size() > 1 ? context[context.size() - 2] : 0;
      return (a + b) % 4;  // Fibonacci mod 4: period 6
    }
    uint64_t h = 1469598103934665603ULL;
    for (int32_t token : context) h = (h ^ static_cast<uint64_t>(token)) * 1099511628211ULL;
    return static_cast<int32_t>(h % 1000);
  }

  void run(int max_steps = 10000) {
    for (int i = 0; i < max_steps && scheduler_.has_work(); ++i) ASSERT_TRUE(step());
    ASSERT_FALSE(scheduler_.has_work()) << "stalled";
  }

  // Blocks in use are exactly those referenced by running sequences, each counted once per
  // reference; blocks a sequence may still write (at or past its computed prefix) are its alone.
  void check_invariants() {
    const BlockAllocator& allocator = scheduler_.allocator();
    std::map<int32_t, int32_t> refs;
    for (const ScheduledSequence& s : scheduler_.running()) {
      std::set<int32_t> own(s.blocks.begin(), s.blocks.end());
      ASSERT_EQ(own.size(), s.blocks.size()) << "sequence " << s.id << " holds a block twice";
      for (int32_t block : s.blocks) ++refs[block];
    }
    for (const ScheduledSequence& s : scheduler_.waiting()) ASSERT_TRUE(s.blocks.empty());
    int32_t used = 0;
    for (int32_t block = 0; block < allocator.num_blocks(); ++block) {
      ASSERT_EQ(allocator.ref_count(block), refs.contains(block) ? refs[block] : 0) << "block " << block;
      used += allocator.ref_count(block) > 0;
    }
    ASSERT_EQ(allocator.num_used(), used);
    for (const ScheduledSequence& s : scheduler_.running()) {
      // After schedule(), computed already counts this step's tokens: the writable blocks start
      // at the block of the first token this step wrote, at the latest.
      for (size_t i = static_cast<size_t>(s.computed / options_.block_size); i < s.blocks.size(); ++i) {
        ASSERT_EQ(allocator.ref_count(s.blocks[i]), 1) << "sequence " << s.id << " may write shared block " << s.blocks[i];
      }
    }
  }

  Scheduler& scheduler() { return scheduler_; }
  const std::map<uint64_t, std::vector<int32_t>>& outputs() const { return outputs_; }
  int steps() const { return steps_; }
  int64_t accepted() const { return accepted_; }
  bool cyclic_ = false;

 private:
  Slot& slot(const StepInput& input, int32_t row, int32_t pos) {
    const int32_t block = input.block_tables[static_cast<size_t>(row * input.max_blocks_per_seq +
                                                                 pos / options_.block_size)];
    return cache_[static_cast<size_t>(block * options_.block_size + pos % options_.block_size)];
  }

  SchedulerOptions options_;
  Scheduler scheduler_;
  std::vector<Slot> cache_;
  std::map<uint64_t, std::vector<int32_t>> prompts_;
  std::map<uint64_t, int64_t> max_tokens_;
  std::map<uint64_t, std::vector<int32_t>> outputs_;
  std::set<uint64_t> finished_;
  int steps_ = 0;
  int64_t accepted_ = 0;
};

SchedulerOptions small_pool(int32_t blocks) {
  SchedulerOptions options;
  options.num_kv_blocks = blocks;
  options.block_size = 4;
  options.max_tokens_per_step = 16;
  options.max_seqs = 8;
  options.max_logit_rows = 8;
  options.max_context = 256;
  options.watermark = 0;
  return options;
}

std::vector<int32_t> prompt_of(int32_t first, int32_t length) {
  std::vector<int32_t> prompt;
  for (int32_t i = 0; i < length; ++i) prompt.push_back(first + i);
  return prompt;
}

TEST(KvOnDemand, PreemptedSequencesResumeWithTheSameTokens) {
  SimulatedEngine roomy(small_pool(64));
  SimulatedEngine tight(small_pool(10));  // 40 positions for 4 sequences of up to 5 + 14
  for (auto* engine : {&roomy, &tight}) {
    for (uint64_t id = 1; id <= 4; ++id) engine->add(id, prompt_of(static_cast<int32_t>(id * 10), 5), 14);
    engine->run();
  }
  EXPECT_EQ(roomy.scheduler().counters().preemptions, 0);
  EXPECT_GT(tight.scheduler().counters().preemptions, 0);
  EXPECT_EQ(tight.outputs(), roomy.outputs());
  EXPECT_EQ(tight.scheduler().blocks_used(), 0);
}

TEST(KvOnDemand, ThePreemptedSequenceIsTheNewest) {
  SimulatedEngine engine(small_pool(4));  // 16 positions
  engine.add(1, prompt_of(10, 4), 8);
  engine.add(2, prompt_of(20, 4), 8);
  engine.add(3, prompt_of(30, 4), 8);
  ASSERT_TRUE(engine.step());  // three prompts prefill: three blocks
  EXPECT_EQ(engine.scheduler().num_running(), 3u);
  // Each needs a second block for its first decode, one is left: 1 takes it, 3 (the newest) is
  // preempted so that 2 can have its block.
  ASSERT_TRUE(engine.step());
  EXPECT_EQ(engine.scheduler().counters().preemptions, 1);
  ASSERT_EQ(engine.scheduler().num_running(), 2u);
  EXPECT_EQ(engine.scheduler().running()[0].id, 1u);
  EXPECT_EQ(engine.scheduler().running()[1].id, 2u);
  ASSERT_EQ(engine.scheduler().num_waiting(), 1u);
  EXPECT_EQ(engine.scheduler().waiting()[0].id, 3u);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(engine.step());  // both cross into a third block
  EXPECT_EQ(engine.scheduler().counters().preemptions, 2);
  ASSERT_EQ(engine.scheduler().num_running(), 1u);
  EXPECT_EQ(engine.scheduler().running()[0].id, 1u);
  EXPECT_EQ(engine.scheduler().waiting()[0].id, 2u);  // the older of the two goes back first
  EXPECT_EQ(engine.scheduler().waiting()[1].id, 3u);
  engine.run();
}

TEST(KvOnDemand, ReservePolicyNeverPreempts) {
  SchedulerOptions options = small_pool(10);
  options.admission = KvAdmission::kReserve;
  SimulatedEngine reserve(options);
  SimulatedEngine roomy(small_pool(64));
  for (auto* engine : {&reserve, &roomy}) {
    for (uint64_t id = 1; id <= 4; ++id) engine->add(id, prompt_of(static_cast<int32_t>(id * 10), 5), 14);
    engine->run();
  }
  EXPECT_EQ(reserve.scheduler().counters().preemptions, 0);
  EXPECT_EQ(reserve.outputs(), roomy.outputs());
  EXPECT_GT(reserve.steps(), roomy.steps());  // one 19-token reservation of 5 blocks at a time
}

TEST(KvOnDemand, WatermarkHoldsBackAdmission) {
  SchedulerOptions options = small_pool(20);
  options.watermark = 0.5;  // 10 blocks kept free while anything runs
  Scheduler scheduler(options);
  scheduler.add(1, prompt_of(0, 16), 4);   // 4 blocks: admitted into an empty batch
  scheduler.add(2, prompt_of(50, 28), 4);  // 7 blocks: 16 - 7 < 10
  scheduler.schedule();
  EXPECT_EQ(scheduler.num_running(), 1u);
  EXPECT_EQ(scheduler.num_waiting(), 1u);
}

TEST(KvOnDemand, NeverFitsNamesBothNumbers) {
  Scheduler scheduler(small_pool(10));
  const auto reason = scheduler.never_fits(30, 20);
  ASSERT_TRUE(reason.has_value());
  EXPECT_NE(reason->find("= 50 exceeds the KV cache of 40 positions"), std::string::npos) << *reason;
  EXPECT_FALSE(scheduler.never_fits(30, 10).has_value());
}

TEST(KvOnDemand, HigherPriorityIsAdmittedFirstThenArrivalOrder) {
  SchedulerOptions options = small_pool(64);
  options.max_seqs = 1;
  options.max_logit_rows = 1;
  Scheduler scheduler(options);
  scheduler.add(1, {1, 2}, 1);
  scheduler.add(2, {3, 4}, 1, 5);
  scheduler.add(3, {5, 6}, 1, 5);
  std::vector<uint64_t> order;
  while (scheduler.has_work()) {
    const ScheduledStep step = scheduler.schedule();
    ASSERT_EQ(step.logit_seqs.size(), 1u);
    order.push_back(step.logit_seqs[0]);
    scheduler.remove(step.logit_seqs[0]);
  }
  EXPECT_EQ(order, (std::vector<uint64_t>{2, 3, 1}));
}

// Shared prefixes of every length relative to the block size (4): shorter than a block, exactly
// one, ending mid-block, exactly two. Only whole blocks before the last prompt token are shared.
TEST(PrefixCache, SharesWholeBlocksBeforeTheLastToken) {
  struct Case {
    int32_t prefix;
    int64_t hit_tokens;
  };
  for (const Case c : {Case{3, 0}, Case{4, 4}, Case{6, 4}, Case{8, 8}, Case{9, 8}}) {
    SimulatedEngine cached(small_pool(32));
    SimulatedEngine cold([] { SchedulerOptions o = small_pool(32); o.prefix_caching = false; return o; }());
    for (auto* engine : {&cached, &cold}) {
      std::vector<int32_t> first = prompt_of(100, c.prefix);
      first.push_back(1);  // each prompt has one token past the shared prefix
      std::vector<int32_t> second = prompt_of(100, c.prefix);
      second.push_back(2);
      engine->add(1, first, 3);
      engine->run();
      engine->add(2, second, 3);
      engine->run();
    }
    EXPECT_EQ(cached.outputs(), cold.outputs()) << "prefix " << c.prefix;
    EXPECT_EQ(cached.scheduler().counters().prefix_hit_tokens, c.hit_tokens) << "prefix " << c.prefix;
    EXPECT_EQ(cached.scheduler().counters().prefix_query_tokens, 2 * (c.prefix + 1));
    EXPECT_EQ(cold.scheduler().counters().prefix_hit_tokens, 0);
  }
}

TEST(PrefixCache, AWholePromptHitStillRecomputesItsLastBlock) {
  SimulatedEngine engine(small_pool(32));
  engine.add(1, prompt_of(0, 8), 2);
  engine.run();
  engine.add(2, prompt_of(0, 8), 2);
  engine.run();
  EXPECT_EQ(engine.scheduler().counters().prefix_hit_tokens, 4);
  EXPECT_EQ(engine.outputs().at(1), engine.outputs().at(2));
}

TEST(PrefixCache, AdapterIdentitySeparatesCaches) {
  const BlockKey a = block_key(0, std::vector<int32_t>{1, 2, 3, 4});
  const BlockKey b = block_key(7, std::vector<int32_t>{1, 2, 3, 4});
  EXPECT_NE(a.hash, b.hash);
  BlockAllocator allocator(2);
  const auto block = allocator.allocate(1);
  allocator.publish((*block)[0], a);
  EXPECT_FALSE(allocator.take_cached(b).has_value());
  EXPECT_EQ(allocator.take_cached(a), (*block)[0]);
  EXPECT_EQ(allocator.ref_count((*block)[0]), 2);
}

TEST(PrefixCache, EvictsLeastRecentlyReleasedOnlyWhenFreeBlocksRunOut) {
  BlockAllocator allocator(3);
  const BlockKey first = block_key(0, std::vector<int32_t>{1});
  const BlockKey second = block_key(0, std::vector<int32_t>{2});
  const auto a = allocator.allocate(1);
  const auto b = allocator.allocate(1);
  allocator.publish((*a)[0], first);
  allocator.publish((*b)[0], second);
  allocator.release(*a);
  allocator.release(*b);
  EXPECT_EQ(allocator.num_free(), 3);
  EXPECT_EQ(allocator.num_cached(), 2);
  const auto fresh = allocator.allocate(1);  // the never-cached block goes first
  EXPECT_EQ(allocator.num_cached(), 2);
  const auto evicting = allocator.allocate(1);  // then the least recently released: `first`
  EXPECT_EQ((*evicting)[0], (*a)[0]);
  EXPECT_FALSE(allocator.take_cached(first).has_value());
  EXPECT_EQ(allocator.take_cached(second), (*b)[0]);
  EXPECT_EQ(allocator.num_free(), 0);
  EXPECT_FALSE(allocator.allocate(1).has_value());
}

// Cancelling one of two sequences sharing a prefix frees only the blocks it alone held.
TEST(PrefixCache, CancellingASharerFreesOnlyItsOwnBlocks) {
  SimulatedEngine engine(small_pool(32));
  engine.add(1, prompt_of(0, 9), 20);
  ASSERT_TRUE(engine.step());
  engine.add(2, prompt_of(0, 9), 20);
  ASSERT_TRUE(engine.step());
  Scheduler& scheduler = engine.scheduler();
  ASSERT_EQ(scheduler.counters().prefix_hit_tokens, 8);
  const std::vector<int32_t> shared = {scheduler.running()[0].blocks[0], scheduler.running()[0].blocks[1]};
  const std::vector<int32_t> own = scheduler.running()[1].blocks;
  scheduler.remove(2);
  for (int32_t block : shared) EXPECT_EQ(scheduler.allocator().ref_count(block), 1);
  EXPECT_EQ(scheduler.allocator().ref_count(own[2]), 0);
  engine.run();
}

// Random arrivals, lengths, shared prefixes, cancellations and pool sizes; the invariants and the
// context check run every step, and outputs must equal those of a pool with room for everything.
TEST(KvOnDemand, RandomizedAgainstAnUnconstrainedRun) {
  std::mt19937 rng(1234);
  int64_t preemptions = 0;
  int64_t hits = 0;
  for (int trial = 0; trial < 200; ++trial) {
    SchedulerOptions tight_options = small_pool(static_cast<int32_t>(8 + rng() % 24));
    tight_options.watermark = (rng() % 2) * 0.1;
    tight_options.max_seqs = static_cast<int>(1 + rng() % 8);
    tight_options.max_logit_rows = tight_options.max_seqs;
    tight_options.max_tokens_per_step = static_cast<int>(4 + rng() % 20);
    tight_options.prefix_caching = rng() % 4 != 0;
    SchedulerOptions roomy_options = tight_options;
    roomy_options.num_kv_blocks = 512;
    roomy_options.prefix_caching = false;
    SimulatedEngine tight(tight_options);
    SimulatedEngine roomy(roomy_options);
    const int32_t capacity = tight_options.num_kv_blocks * tight_options.block_size;
    for (uint64_t id = 1; id <= 12; ++id) {
      const auto length = static_cast<int32_t>(1 + rng() % 12);
      const int64_t max_tokens = 1 + static_cast<int64_t>(rng() % 12);
      if (length + max_tokens > capacity) continue;
      std::vector<int32_t> prompt = prompt_of(static_cast<int32_t>(rng() % 3) * 100, length);
      prompt.back() += static_cast<int32_t>(id);
      const auto priority = static_cast<int32_t>(rng() % 2);
      for (auto* engine : {&tight, &roomy}) engine->add(id, prompt, max_tokens, priority);
      if (rng() % 3 == 0) {
        ASSERT_NO_FATAL_FAILURE(tight.step());
        ASSERT_NO_FATAL_FAILURE(roomy.step());
      }
    }
    ASSERT_NO_FATAL_FAILURE(tight.run());
    ASSERT_NO_FATAL_FAILURE(roomy.run());
    EXPECT_EQ(tight.outputs(), roomy.outputs()) << "trial " << trial;
    EXPECT_EQ(tight.scheduler().blocks_used(), 0);
    preemptions += tight.scheduler().counters().preemptions;
    hits += tight.scheduler().counters().prefix_hit_tokens;
  }
  EXPECT_GT(preemptions, 50);  // the trials do exercise both
  EXPECT_GT(hits, 500);
  std::printf("randomized: %lld preemptions, %lld prefix-hit tokens\n",
              static_cast<long long>(preemptions), static_cast<long long>(hits));
}

TEST(NgramDraft, MostRecentLongestMatch) {
  // Last 3 tokens (1 2 3) occur at 0 and 5; the later occurrence's continuation wins.
  EXPECT_EQ(ngram_draft(std::vector<int32_t>{1, 2, 3, 9, 9, 1, 2, 3, 7, 8, 1, 2, 3}, 2),
            (std::vector<int32_t>{7, 8}));
  // No 3- or 2-gram recurs; the 1-gram 5 does.
  EXPECT_EQ(ngram_draft(std::vector<int32_t>{5, 6, 7, 8, 5}, 3), (std::vector<int32_t>{6, 7, 8}));
  // The draft stops at the end of the tokens.
  EXPECT_EQ(ngram_draft(std::vector<int32_t>{4, 4}, 5), (std::vector<int32_t>{4}));
  EXPECT_TRUE(ngram_draft(std::vector<int32_t>{1, 2, 3}, 4).empty());
  EXPECT_TRUE(ngram_draft(std::vector<int32_t>{1, 1}, 0).empty());
  EXPECT_TRUE(ngram_draft(std::vector<int32_t>{1}, 4).empty());
}

// Speculation changes the number of steps, never the tokens; rejected drafts' K/V are never read
// (the context check), and speculation composes with preemption and prefix caching.
TEST(NgramSpeculation, SameTokensInFewerSteps) {
  for (const int32_t blocks : {64, 10}) {
    SchedulerOptions plain_options = small_pool(blocks);
    plain_options.max_logit_rows = plain_options.max_seqs * 5;
    SchedulerOptions spec_options = plain_options;
    spec_options.speculative_ngram = 4;
    SimulatedEngine plain(plain_options);
    SimulatedEngine spec(spec_options);
    for (auto* engine : {&plain, &spec}) {
      engine->cyclic_ = true;
      for (uint64_t id = 1; id <= 4; ++id) engine->add(id, prompt_of(static_cast<int32_t>(id), 3), 30);
      ASSERT_NO_FATAL_FAILURE(engine->run());
    }
    EXPECT_EQ(spec.outputs(), plain.outputs()) << blocks << " blocks";
    EXPECT_GT(spec.scheduler().counters().draft_tokens, 0);
    EXPECT_GT(spec.accepted(), 0);
    EXPECT_LT(spec.steps(), plain.steps()) << blocks << " blocks";
    EXPECT_EQ(plain.scheduler().counters().draft_tokens, 0);
    if (blocks == 10) EXPECT_GT(spec.scheduler().counters().preemptions, 0);
  }
}

TEST(NgramSpeculation, RandomizedAgainstPlainDecoding) {
  std::mt19937 rng(99);
  for (int trial = 0; trial < 100; ++trial) {
    SchedulerOptions options = small_pool(static_cast<int32_t>(10 + rng() % 30));
    options.max_seqs = static_cast<int>(1 + rng() % 6);
    options.max_tokens_per_step = static_cast<int>(4 + rng() % 16);
    options.prefix_caching = rng() % 2 == 0;
    options.speculative_ngram = static_cast<int>(1 + rng() % 5);
    options.max_logit_rows = options.max_seqs * (1 + static_cast<int>(rng() % 6));
    SchedulerOptions roomy_options = small_pool(512);
    SimulatedEngine spec(options);
    SimulatedEngine plain(roomy_options);
    const int32_t capacity = options.num_kv_blocks * options.block_size;
    for (uint64_t id = 1; id <= 8; ++id) {
      const auto length = static_cast<int32_t>(1 + rng() % 8);
      const int64_t max_tokens = 1 + static_cast<int64_t>(rng() % 24);
      if (length + max_tokens > capacity) continue;
      const std::vector<int32_t> prompt = prompt_of(static_cast<int32_t>(rng() % 5), length);
      for (auto* engine : {&spec, &plain}) {
        engine->cyclic_ = true;
        engine->add(id, prompt, max_tokens);
      }
    }
    ASSERT_NO_FATAL_FAILURE(spec.run());
    ASSERT_NO_FATAL_FAILURE(plain.run());
    EXPECT_EQ(spec.outputs(), plain.outputs()) << "trial " << trial;
    EXPECT_EQ(spec.scheduler().blocks_used(), 0);
  }
}

}  // namespace
}  // namespace tpserve::runtime
