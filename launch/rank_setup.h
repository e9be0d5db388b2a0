// What every multi-rank subcommand does the same way: rank options (step budget, KV blocks,
// collective timeout), thread set-up, collective phases, loading the model with progress.
#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "kernels/ops.h"
#include "launch/model_source.h"
#include "parallel/communicator.h"
#include "parallel/mpi_communicator.h"
#include "runtime/model/model.h"
#include "runtime/tokenizer/tokenizer.h"

namespace tpserve::launch {

// Where a rank computes: the CPU reference (f32) or one CUDA GPU (bf16 / fp16).
struct DeviceOptions {
  std::string device = "cpu";  // cpu | cuda
  std::string dtype = "bf16";  // cuda only: bf16 | fp16
  bool allow_shared_gpu = false;
  double gpu_util = 0.90;      // cuda: fraction of device memory for weights + workspace + KV
};

struct RankOptions {
  int max_tokens_per_step = 256;
  int block_size = 16;
  double collective_timeout_s = 300;  // while loading (ranks may load at different speeds)
  double step_timeout_s = 30;         // once serving: no step takes this long
  bool allow_unused_tensors = false;  // checkpoint tensors no adapter rule reads: warn, not refuse
  int load_threads = 0;               // threads reading the checkpoint; 0: cores, at most 8
  DeviceOptions device;
  std::string kv_cache_dtype = "auto";  // auto | int8 (parse_kv_cache_dtype)

  std::chrono::milliseconds collective_timeout() const {
    return std::chrono::milliseconds(static_cast<int64_t>(collective_timeout_s * 1000));
  }
  std::chrono::milliseconds step_timeout() const {
    return std::chrono::milliseconds(static_cast<int64_t>(step_timeout_s * 1000));
  }
  // --kv-cache-dtype read, and refused (naming the flag) where the device has no kernels for it:
  // int8 on cuda, for now. Raises on every rank alike: call it before make_rank_device.
  runtime::KvCacheDtype kv_dtype() const;
  runtime::ModelOptions model_options() const;
};

void add_rank_options(CLI::App& app, RankOptions& options);

void add_device_options(CLI::App& app, DeviceOptions& options);

// This rank's backend and the communicator its model's collectives use. On the CPU that is the
// MPI communicator itself; on a GPU it is NCCL (one GPU per rank) or, with --allow-shared-gpu and
// more ranks than GPUs, MPI staged through host memory. Host-side control traffic (step plans,
// phase verdicts) always stays on the MPI communicator.
struct RankDevice {
  std::unique_ptr<kernels::Backend> backend;
  std::unique_ptr<parallel::Communicator> device_comm;  // null on the CPU
  parallel::Communicator* model_comm = nullptr;
  int ranks_per_device = 1;  // > 1 with --allow-shared-gpu: they split the device's memory
};

// Collective over `mpi` (every rank calls it). Raises tpserve::Error with the reason — no GPU,
// more ranks than GPUs without --allow-shared-gpu, a bad dtype — on every rank.
RankDevice make_rank_device(const DeviceOptions& options, parallel::MpiCommunicator& mpi,
                            std::chrono::milliseconds timeout);

// The KV pool of a serving rank: `mib` MiB when given (> 0); otherwise, on a device with a fixed
// memory (a GPU), what the memory plan leaves of --gpu-util of it (of this rank's share of it, when
// ranks share a GPU) after weights and workspace — refusing, with the plan's numbers, a model that
// does not fit; on the CPU, 256 MiB.
int32_t kv_blocks_for_rank(const runtime::ModelConfig& config, int tp_size,
                           const runtime::ModelOptions& options, double mib,
                           const RankDevice& device, const DeviceOptions& device_options);

// OpenBLAS threads per rank: the node's cores shared among its ranks, unless OPENBLAS_NUM_THREADS
// says otherwise.
void configure_cpu_threads(const parallel::MpiSession& session);

// The CPU threads a rank uses: OPENBLAS_NUM_THREADS when set, else the host's cores shared among
// its ranks and capped by the cores the rank's CPU affinity allows (0: unknown). `warning` says
// how to launch instead when OPENBLAS_NUM_THREADS asks for more threads than the affinity allows
// cores, or when a rank is confined to one core of several (mpirun's default --bind-to core for
// one or two ranks); a scheduler's own share (srun --cpus-per-task) only caps the default.
int cpu_threads_for_rank(int hardware_cores, int local_ranks, int allowed_cores,
                         const char* openblas_env, std::string* warning);

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

// A rank of a serving job (serve, batch generate): its device, the model with a KV pool for
// max_seqs sequences, and on rank 0 the tokenizer (null, with a warning, when the model directory
// has none: token-id prompts only).
struct ServingRank {
  RankDevice device;
  std::unique_ptr<runtime::Model> model;
  std::unique_ptr<runtime::Tokenizer> tokenizer;
};

struct ServingRankOptions {
  std::string model_dir;
  // Instead of model_dir: a shape preset with synthetic weights (serve --synthetic), no tokenizer.
  ModelSource synthetic;
  std::string lora_dir;
  int max_seqs = 32;
  double kv_cache_mib = 0;  // 0: kv_blocks_for_rank's default
  RankOptions rank;
  int speculative_ngram = 0;  // drafts per sequence: that many more logit rows each
};

// Call inside the job's load phase (run_phase): raises on any problem. With options.synthetic's
// preset set, the model is that preset's shape (quantized as its --quant says) with the synthetic
// weights `tpserve bench` uses, seeded alike on every rank; rank 0 has no tokenizer.
void load_serving_rank(ServingRank& rank, parallel::MpiCommunicator& comm,
                       const ServingRankOptions& options);

}  // namespace tpserve::launch
