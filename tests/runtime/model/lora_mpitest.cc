// A PEFT LoRA adapter (tests/fixtures/qwen2_tied_lora) merged at load into qwen2_tied, at whatever
// N this binary runs under: logits within 1e-4 of peft's un-merged forward and identical greedy
// continuations (make_family_fixtures.py wrote both with transformers + peft).
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/ops.h"
#include "parallel/mpi_communicator.h"
#include "runtime/engine/greedy.h"
#include "runtime/families/load_config.h"
#include "runtime/formats/safetensors.h"
#include "runtime/model/lora.h"
#include "runtime/model/model.h"
#include "tests/runtime/model/reference.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

TEST(LoraModel, MergedAdapterMatchesPeft) {
  parallel::MpiCommunicator comm(MPI_COMM_WORLD, std::chrono::seconds(60));
  const auto base = testing::fixtures_dir() / "qwen2_tied";
  const auto adapter_dir = testing::fixtures_dir() / "qwen2_tied_lora";
  const ModelConfig config = load_model_config(base);
  if (config.num_heads % comm.size() != 0) GTEST_SKIP() << "tp " << comm.size();
  auto backend = kernels::make_cpu_backend();
  ModelOptions options;
  options.num_kv_blocks = 16;
  options.block_size = 4;
  Model model(config, rank_shape(config, comm.size(), comm.rank()), *backend, comm, options);
  const auto adapter = LoraAdapter::open(adapter_dir);
  EXPECT_EQ(adapter->num_targets(), 14u);  // 7 modules x 2 layers
  model.load(*Checkpoint::open(base), {}, adapter.get());
  for (const testing::ReferenceCase& c : testing::load_reference(adapter_dir)) {
    StepInput step = testing::prompt_step(c.prompt_ids, options.num_kv_blocks, options.block_size);
    std::vector<float> logits;
    model.forward(step, logits);
    const size_t vocab = static_cast<size_t>(config.vocab_size);
    ASSERT_EQ(logits.size(), c.logits.size() * vocab);
    const float worst = testing::max_abs_diff(logits, c.logits, vocab);
    EXPECT_LE(worst, 1e-4f) << "tp " << comm.size();
    if (comm.rank() == 0) {
      std::printf("[ fidelity ] qwen2_tied+lora tp=%d prompt_len=%zu max|logit - peft| = %.3g\n",
                  comm.size(), c.prompt_ids.size(), worst);
    }
    GreedyOptions greedy;
    greedy.max_tokens = static_cast<int>(c.greedy.size());
    const std::vector<int32_t> generated = generate_greedy(model, comm, c.prompt_ids, greedy);
    if (comm.rank() == 0) {
      EXPECT_EQ(generated, c.greedy) << "tp " << comm.size();
    }
  }
}

}  // namespace
}  // namespace tpserve::runtime
