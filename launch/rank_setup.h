// What every multi-rank subcommand does the same way: rank options (step budget, KV blocks,
// collective timeout), thread set-up, collective phases, loading the model with progress.
#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "kernels/ops.h"
#include "parallel/communicator.h"
#include "parallel/mpi_communicator.h"
#include "runtime/model.h"

namespace tpserve::launch {

struct RankOptions {
  int max_tokens_per_step = 256;
  int block_size = 16;
  double collective_timeout_s = 300;  // while loading (ranks may load at different speeds)
  double step_timeout_s = 30;         // once serving: no step takes this long

  std::chrono::milliseconds collective_timeout() const {
    return std::chrono::milliseconds(static_cast<int64_t>(collective_timeout_s * 1000));
  }
  std::chrono::milliseconds step_timeout() const {
    return std::chrono::milliseconds(static_cast<int64_t>(step_timeout_s * 1000));
  }
  runtime::ModelOptions model_options() const;
};

void add_rank_options(CLI::App& app, RankOptions& options);

// OpenBLAS threads per rank: the node's cores shared among its ranks, unless OPENBLAS_NUM_THREADS
// says otherwise.
void configure_cpu_threads(const parallel::MpiSession& session);

// Runs `phase` on every rank and agrees on the outcome: a rank whose phase throws logs one line
// naming the problem; then all ranks learn whether every rank succeeded. Returns that verdict,
// so no rank goes on into a collective that a failed peer will never join.
bool run_phase(parallel::Communicator& comm, const char* name, const std::function<void()>& phase);

// Opens the checkpoint, plans this rank's shards, builds the model and loads it, logging progress
// and load throughput on rank 0. A non-empty lora_dir (--lora) is a PEFT adapter merged into this
// rank's shards as they load.
std::unique_ptr<runtime::Model> load_model(runtime::ModelConfig config,
                                           const runtime::ModelOptions& options,
                                           parallel::Communicator& comm, kernels::Backend& backend,
                                           const std::string& lora_dir = {});

}  // namespace tpserve::launch
