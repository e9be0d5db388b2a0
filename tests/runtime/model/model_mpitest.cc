// The tensor-parallel model against transformers, at whatever N this binary runs under
// (ctest runs it with mpirun -np 1, 2, 3 and 4): logits at every prompt position within 1e-4 of
// transformers' float32 logits, and identical greedy continuations. llama_dynamic, qwen_v1_ntk and
// qwen2_yarn run past the trained length (dynamic NTK; Qwen v1's use_dynamic_ntk and
// use_logn_attn; YaRN), chatglm_mha to 56 of its 64 positions with rope_ratio 50, their greedy
// references decoded through transformers' KV cache.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "common/error.h"
#include "kernels/ops.h"
#include "parallel/mpi_communicator.h"
#include "runtime/engine/greedy.h"
#include "runtime/families/load_config.h"
#include "runtime/formats/safetensors.h"
#include "runtime/model/model.h"
#include "tests/runtime/model/reference.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

constexpr float kTolerance = 1e-4f;

class FixtureModelTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    comm_ = std::make_unique<parallel::MpiCommunicator>(MPI_COMM_WORLD, std::chrono::seconds(60));
    dir_ = testing::fixtures_dir() / GetParam();
    config_ = load_model_config(dir_);
  }

  // A loaded model at N = world size, or nullptr (and the test skipped) when N does not divide
  // the fixture's query heads — after checking the error names the numbers.
  std::unique_ptr<Model> build(ModelOptions options) {
    const int tp = comm_->size();
    if (config_.num_heads % tp != 0) {
      try {
        rank_shape(config_, tp, comm_->rank());
        ADD_FAILURE() << "expected an error for tp " << tp;
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(std::to_string(config_.num_heads) + " query heads"),
                  std::string::npos)
            << e.what();
      }
      return nullptr;
    }
    backend_ = kernels::make_cpu_backend();
    auto model = std::make_unique<Model>(config_, rank_shape(config_, tp, comm_->rank()), *backend_,
                                         *comm_, options);
    model->load(*Checkpoint::open(dir_));
    return model;
  }

  std::unique_ptr<parallel::MpiCommunicator> comm_;
  std::unique_ptr<kernels::Backend> backend_;
  std::filesystem::path dir_;
  ModelConfig config_;
};

TEST_P(FixtureModelTest, LogitsAtEveryPromptPositionMatchTransformers) {
  ModelOptions options;
  options.num_kv_blocks = 16;  // the long-context fixtures' prompts reach 40 tokens (64 slots)
  options.block_size = 4;  // several blocks per prompt: exercises the block tables
  auto model = build(options);
  if (!model) GTEST_SKIP() << "tp " << comm_->size() << " does not divide " << config_.num_heads << " heads";
  for (const testing::ReferenceCase& c : testing::load_reference(dir_)) {
    StepInput step = testing::prompt_step(c.prompt_ids, options.num_kv_blocks, options.block_size);
    std::vector<float> logits;
    model->forward(step, logits);
    const size_t vocab = static_cast<size_t>(config_.vocab_size);
    ASSERT_EQ(logits.size(), c.logits.size() * vocab);
    const float worst = testing::max_abs_diff(logits, c.logits, vocab);
    EXPECT_LE(worst, kTolerance) << GetParam() << " tp " << comm_->size() << " prompt of "
                                 << c.prompt_ids.size() << " tokens";
    if (comm_->rank() == 0) {
      std::printf("[ fidelity ] %s tp=%d prompt_len=%zu max|logit - transformers| = %.3g\n",
                  GetParam().c_str(), comm_->size(), c.prompt_ids.size(), worst);
    }
  }
}

TEST_P(FixtureModelTest, GreedyContinuationsMatchTransformers) {
  ModelOptions options;
  options.num_kv_blocks = 16;
  options.block_size = 4;
  options.max_tokens_per_step = 4;  // prompts longer than 4 tokens prefill in chunks
  options.max_logit_rows = 1;
  options.max_seqs = 1;
  auto model = build(options);
  if (!model) GTEST_SKIP() << "tp " << comm_->size() << " does not divide " << config_.num_heads << " heads";
  for (const testing::ReferenceCase& c : testing::load_reference(dir_)) {
    GreedyOptions greedy;
    greedy.max_tokens = static_cast<int>(c.greedy.size());
    const std::vector<int32_t> generated = generate_greedy(*model, *comm_, c.prompt_ids, greedy);
    if (comm_->rank() == 0) {
      EXPECT_EQ(generated, c.greedy) << GetParam() << " tp " << comm_->size();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureModelTest,
                         ::testing::Values("llama_gqa", "qwen2_tied", "llama_bias_f16", "qwen_v1",
                                           "internlm2", "chatglm", "chatglm_mha", "chatglm_bias",
                                           "qwen2_moe", "llama_dynamic", "qwen_v1_ntk",
                                           "qwen2_yarn"),
                         // Named by fixture, so --gtest_filter='*qwen2_moe*' picks one family.
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace tpserve::runtime
