// A checkpoint file truncated after every rank opened it: each rank's load stops with one line
// naming the file (a short read, not a SIGBUS through a mapping), and every rank learns it.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/error.h"
#include "kernels/ops.h"
#include "parallel/mpi_communicator.h"
#include "runtime/families/load_config.h"
#include "runtime/formats/safetensors.h"
#include "runtime/model/model.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

TEST(ShardLoaderRanks, TruncatedWhileLoadingNamesTheFileOnEveryRank) {
  parallel::MpiCommunicator comm(MPI_COMM_WORLD, std::chrono::seconds(60));
  // Each rank its own copy (the test truncates it), of a model every N here can shard.
  testing::ScratchDir scratch("truncated_load_rank" + std::to_string(comm.rank()));
  const auto dir = scratch.path() / "model";
  std::filesystem::copy(testing::fixtures_dir() / "qwen2_tied", dir);
  const ModelConfig config = load_model_config(dir);
  if (config.num_heads < comm.size()) GTEST_SKIP() << "tp " << comm.size();
  auto backend = kernels::make_cpu_backend();
  ModelOptions options;
  options.num_kv_blocks = 4;
  Model model(config, rank_shape(config, comm.size(), comm.rank()), *backend, comm, options);
  const auto checkpoint = Checkpoint::open(dir);
  const auto file = dir / "model.safetensors";
  // Cut into the last tensors' data, which every rank reads some of (norms are replicated).
  std::filesystem::resize_file(file, std::filesystem::file_size(file) / 2);
  std::string message;
  try {
    model.load(*checkpoint);
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find(file.string() + ": short read"), std::string::npos)
      << "rank " << comm.rank() << ": " << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  EXPECT_FALSE(comm.all_ok(message.empty()));  // every rank failed, and all know it
}

}  // namespace
}  // namespace tpserve::runtime
