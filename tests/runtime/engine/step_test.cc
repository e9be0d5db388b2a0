// The step plan's wire form and the KV block allocator.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "runtime/engine/block_allocator.h"
#include "runtime/engine/scheduler.h"
#include "runtime/model/rope_tables.h"
#include "runtime/model/step.h"

namespace tpserve::runtime {
namespace {

TEST(StepPlan, SerializeRoundTrips) {
  StepInput step;
  step.token_ids = {5, 6, 7};
  step.token_seq = {0, 0, 1};
  step.token_pos = {3, 4, 0};
  step.block_tables = {2, 9, 4, 0};
  step.max_blocks_per_seq = 2;
  step.logit_rows = {1, 2};
  step.seq_prompt_len = {30, 7};
  const StepInput back = deserialize_step(serialize_step(step));
  EXPECT_EQ(back.token_ids, step.token_ids);
  EXPECT_EQ(back.token_seq, step.token_seq);
  EXPECT_EQ(back.token_pos, step.token_pos);
  EXPECT_EQ(back.block_tables, step.block_tables);
  EXPECT_EQ(back.max_blocks_per_seq, 2);
  EXPECT_EQ(back.num_seqs(), 2);
  EXPECT_EQ(back.logit_rows, step.logit_rows);
  EXPECT_EQ(back.seq_prompt_len, step.seq_prompt_len);
  EXPECT_FALSE(back.stop);
  StepInput stop;
  stop.stop = true;
  EXPECT_TRUE(deserialize_step(serialize_step(stop)).stop);
}

// Every scheduled row carries its sequence's prompt length (dynamic NTK, Qwen's alpha), in prefill
// chunks and decode steps alike.
TEST(StepPlan, SchedulerSendsEachSequencesPromptLength) {
  SchedulerOptions options;
  options.num_kv_blocks = 16;
  options.block_size = 4;
  options.max_tokens_per_step = 4;
  options.max_seqs = 2;
  options.max_logit_rows = 2;
  options.max_context = 64;
  Scheduler scheduler(options);
  scheduler.add(1, {5, 6}, 4);
  scheduler.add(2, {1, 2, 3, 4, 5, 6, 7}, 4);
  ScheduledStep first = scheduler.schedule();  // seq 1 whole, seq 2's first 2 tokens
  EXPECT_EQ(first.input.seq_prompt_len, (std::vector<int32_t>{2, 7}));
  scheduler.append_token(1, 9);
  ScheduledStep second = scheduler.schedule();  // seq 1 decodes, seq 2 continues its prefill
  EXPECT_EQ(second.input.seq_prompt_len, (std::vector<int32_t>{2, 7}));
  EXPECT_EQ(second.input.num_seqs(), 2);
}

TEST(BlockAllocator, AllocatesDistinctBlocksAndRefusesWithoutTakingAny) {
  BlockAllocator allocator(5);
  auto a = allocator.allocate(3);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(allocator.num_free(), 2);
  EXPECT_FALSE(allocator.allocate(3).has_value());
  EXPECT_EQ(allocator.num_free(), 2);
  auto b = allocator.allocate(2);
  ASSERT_TRUE(b.has_value());
  std::set<int32_t> all(a->begin(), a->end());
  all.insert(b->begin(), b->end());
  EXPECT_EQ(all, (std::set<int32_t>{0, 1, 2, 3, 4}));
  allocator.release(*a);
  EXPECT_EQ(allocator.num_used(), 2);
  allocator.release(*b);
  EXPECT_EQ(allocator.num_free(), 5);
  EXPECT_EQ(blocks_for(0, 16), 0);
  EXPECT_EQ(blocks_for(16, 16), 1);
  EXPECT_EQ(blocks_for(17, 16), 2);
}

TEST(BlockAllocatorDeath, DoubleReleaseIsABrokenInvariant) {
  BlockAllocator allocator(2);
  auto a = allocator.allocate(1);
  allocator.release(*a);
  EXPECT_DEATH(allocator.release(*a), "not allocated");
}

TEST(RopeTables, DefaultFrequenciesAndLlama3Bands) {
  RopeConfig rope;
  rope.theta = 10000.0f;
  rope.rotary_dim = 8;
  const auto base = rope_inv_freq(rope);
  ASSERT_EQ(base.size(), 4u);
  EXPECT_FLOAT_EQ(base[0], 1.0f);
  EXPECT_NEAR(base[1], 0.1f, 1e-7);  // 10000^(-2/8)
  EXPECT_NEAR(base[3], 0.001f, 1e-9);
  rope.scaling = RopeScaling::kLinear;
  rope.factor = 4.0f;
  EXPECT_FLOAT_EQ(rope_inv_freq(rope)[1], base[1] / 4.0f);
  // llama3 with original context 64: wavelength 2*pi/f. f=1 (6.3) < 64/4 stays; f=0.001 (6283)
  // > 64/1 is divided by the factor; f=0.1 (62.8) lies in the band [16, 64] and is smoothed:
  // smooth = (64 / 62.83 - 1) / (4 - 1).
  rope.scaling = RopeScaling::kLlama3;
  rope.factor = 8.0f;
  rope.original_max_position_embeddings = 64;
  const auto scaled = rope_inv_freq(rope);
  EXPECT_FLOAT_EQ(scaled[0], base[0]);
  EXPECT_FLOAT_EQ(scaled[3], base[3] / 8.0f);
  const float smooth = (64.0f / (2.0f * 3.14159265f / base[1]) - 1.0f) / 3.0f;
  EXPECT_NEAR(scaled[1], (1 - smooth) * base[1] / 8.0f + smooth * base[1], 1e-6);
}

// Dynamic NTK's g per token, by hand from transformers' _compute_dynamic_ntk_parameters
// (factor * L / M - (factor - 1), L = max(prompt, position + 1)) and modeling_qwen.py's get_ntk_alpha
// (alpha from the prompt only) and logn_list.
TEST(RopeTables, DynamicNtkScalePerToken) {
  RopeConfig llama;
  llama.rotary_dim = 8;
  llama.scaling = RopeScaling::kDynamic;
  llama.factor = 3.0f;
  llama.trained_context = 16;
  EXPECT_EQ(dynamic_ntk_scale(llama, 8, 7), 1.0f);    // L = 8 <= 16
  EXPECT_EQ(dynamic_ntk_scale(llama, 8, 15), 1.0f);   // decode at 15: L = 16
  EXPECT_FLOAT_EQ(dynamic_ntk_scale(llama, 8, 16), 3.0f * 17 / 16 - 2);  // decode at 16: L = 17
  EXPECT_FLOAT_EQ(dynamic_ntk_scale(llama, 30, 0), 3.0f * 30 / 16 - 2);  // prompt token: L = 30
  EXPECT_FLOAT_EQ(dynamic_ntk_scale(llama, 30, 35), 3.0f * 36 / 16 - 2);
  RopeConfig qwen = llama;
  qwen.scaling = RopeScaling::kQwenNtk;
  EXPECT_EQ(dynamic_ntk_scale(qwen, 16, 40), 1.0f);  // prompt <= seq_length: 1 for every decode
  EXPECT_EQ(dynamic_ntk_scale(qwen, 17, 0), 3.0f);   // ceil(log2(17/16) + 1) = 2: 2^2 - 1
  EXPECT_EQ(dynamic_ntk_scale(qwen, 32, 50), 3.0f);  // log2(2) + 1 = 2 exactly
  EXPECT_EQ(dynamic_ntk_scale(qwen, 40, 0), 7.0f);   // ceil(2.32) = 3
  EXPECT_EQ(dynamic_ntk_scale(qwen, 8, 0), 1.0f);    // 2^0 - 1 = 0, at least 1
  qwen.trained_context = 1;
  // math.log(2 ** 29, 2) is 29.000000000000004 in Python: ceil gives 30, alpha 2^31 - 1.
  EXPECT_EQ(dynamic_ntk_scale(qwen, int64_t{1} << 29, 0), static_cast<float>((int64_t{1} << 31) - 1));
  RopeConfig none;
  EXPECT_EQ(dynamic_ntk_scale(none, 100000, 100000), 1.0f);
  EXPECT_EQ(logn_query_scale(16, 15), 1.0f);
  EXPECT_FLOAT_EQ(logn_query_scale(16, 16), std::log(17.0f) / std::log(16.0f));
  EXPECT_EQ(logn_query_scale(0, 100), 1.0f);
}

}  // namespace
}  // namespace tpserve::runtime
