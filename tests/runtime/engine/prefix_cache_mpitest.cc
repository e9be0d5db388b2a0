// Prefix caching through the real model at TP = world size: a prompt whose leading blocks come
// from another sequence's cache gives next-token logits within 1e-5 of the same prompt run cold,
// for shared prefixes of every length relative to the block size (shorter than a block, a whole
// block, ending mid-block, several blocks, the whole prompt). Rank 0's scheduler decides every
// step and broadcasts it, as in serving.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "kernels/ops.h"
#include "parallel/mpi_communicator.h"
#include "runtime/engine/scheduler.h"
#include "runtime/families/load_config.h"
#include "runtime/formats/safetensors.h"
#include "runtime/model/model.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

constexpr int32_t kBlockSize = 4;

class PrefixCacheModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    comm_ = std::make_unique<parallel::MpiCommunicator>(MPI_COMM_WORLD, std::chrono::seconds(60));
    const auto dir = testing::fixtures_dir() / "qwen2_tied";  // 12 heads: any N up to 4 works
    config_ = load_model_config(dir);
    options_.num_kv_blocks = 32;
    options_.block_size = kBlockSize;
    options_.max_tokens_per_step = 32;
    options_.max_seqs = 2;
    options_.max_logit_rows = 2;
    backend_ = kernels::make_cpu_backend();
    model_ = std::make_unique<Model>(config_, rank_shape(config_, comm_->size(), comm_->rank()),
                                     *backend_, *comm_, options_);
    model_->load(*Checkpoint::open(dir));
  }

  SchedulerOptions scheduler_options(bool prefix_caching) const {
    SchedulerOptions s;
    s.num_kv_blocks = options_.num_kv_blocks;
    s.block_size = kBlockSize;
    s.max_tokens_per_step = options_.max_tokens_per_step;
    s.max_seqs = options_.max_seqs;
    s.max_logit_rows = options_.max_logit_rows;
    s.max_context = 128;
    s.prefix_caching = prefix_caching;
    return s;
  }

  // Prefills `prompt` as sequence `id` (one step: it fits the budget) and returns its last
  // position's logits and the first position the step computed. Every rank takes part.
  std::pair<std::vector<float>, int32_t> prefill(Scheduler& scheduler, uint64_t id,
                                                 const std::vector<int32_t>& prompt) {
    StepInput step;
    if (comm_->rank() == 0) {
      scheduler.add(id, prompt, 1);
      step = scheduler.schedule().input;
    }
    broadcast_step(*comm_, step);
    std::vector<float> logits;
    model_->forward(step, logits);
    if (comm_->rank() == 0) scheduler.remove(id);  // finished: its full blocks stay cached
    return {logits, step.token_pos.empty() ? -1 : step.token_pos[0]};
  }

  std::unique_ptr<parallel::MpiCommunicator> comm_;
  std::unique_ptr<kernels::Backend> backend_;
  std::unique_ptr<Model> model_;
  ModelConfig config_;
  ModelOptions options_;
};

TEST_F(PrefixCacheModelTest, CachedPrefixLogitsEqualAColdRun) {
  std::vector<int32_t> first;  // 13 tokens: three whole blocks and one more
  for (int32_t i = 0; i < 13; ++i) first.push_back(10 + 7 * i);
  // Shared prefixes of 1..13 tokens; the second prompt then differs (or, at 13, is the same).
  for (size_t shared = 1; shared <= first.size(); ++shared) {
    std::vector<int32_t> second(first.begin(), first.begin() + static_cast<std::ptrdiff_t>(shared));
    if (shared < first.size()) second.insert(second.end(), {300, 301, 302});
    Scheduler warm(scheduler_options(true));
    prefill(warm, 1, first);
    const auto [cached, start] = prefill(warm, 2, second);
    Scheduler cold(scheduler_options(false));
    const auto [fresh, cold_start] = prefill(cold, 3, second);
    if (comm_->rank() != 0) continue;
    // Whole blocks of the shared prefix, never the block of the last prompt token.
    const auto expected_hit = static_cast<int32_t>(
        std::min(shared / kBlockSize, (second.size() - 1) / kBlockSize) * kBlockSize);
    EXPECT_EQ(start, expected_hit) << "shared " << shared;
    EXPECT_EQ(warm.counters().prefix_hit_tokens, expected_hit) << "shared " << shared;
    EXPECT_EQ(cold_start, 0);
    ASSERT_EQ(cached.size(), fresh.size());
    float worst = 0;
    for (size_t i = 0; i < cached.size(); ++i) worst = std::max(worst, std::fabs(cached[i] - fresh[i]));
    EXPECT_LE(worst, 1e-5f) << "shared " << shared << " tp " << comm_->size();
  }
}

}  // namespace
}  // namespace tpserve::runtime
