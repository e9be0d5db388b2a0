#include "launch/rank_setup.h"

#include <cblas.h>
#include <fmt/ranges.h>

#include <sched.h>

#include <cstdlib>
#include <thread>

#include "common/error.h"
#include "common/log.h"
#include "kernels/cuda_backend.h"
#include "parallel/gpu_communicator.h"
#include "parallel/topology.h"
#include "launch/model_source.h"
#include "launch/model_tokenizer.h"
#include "runtime/model/checkpoint_source.h"
#include "runtime/model/lora.h"
#include "runtime/planning/memory_plan.h"

namespace tpserve::launch {

runtime::KvCacheDtype RankOptions::kv_dtype() const {
  return parse_kv_cache_dtype(kv_cache_dtype);
}

runtime::ModelOptions RankOptions::model_options() const {
  runtime::ModelOptions options;
  options.kv_cache_dtype = kv_dtype();
  options.max_tokens_per_step = max_tokens_per_step;
  options.block_size = block_size;
  options.allow_unused_tensors = allow_unused_tensors;
  options.load_threads = load_threads;
  return options;
}

void add_rank_options(CLI::App& app, RankOptions& options) {
  app.add_option("--max-tokens-per-step", options.max_tokens_per_step,
                 "Token budget of one step (prefill is chunked to it)")
      ->check(CLI::Range(1, 1 << 16));
  app.add_option("--block-size", options.block_size, "KV cache positions per block")
      ->check(CLI::Range(1, 1024));
  app.add_option("--kv-cache-dtype", options.kv_cache_dtype,
                 "KV cache element type: auto (the compute dtype) or int8 (one scale per position "
                 "and KV head; ~3.9x the positions of f32, ~1.9x of bf16)");
  app.add_option("--collective-timeout", options.collective_timeout_s,
                 "Seconds a collective may wait for a peer while loading before the job is ended")
      ->check(CLI::Range(0.1, 86400.0));
  app.add_option("--step-timeout", options.step_timeout_s,
                 "Seconds a collective may wait for a peer once running before the job is ended")
      ->check(CLI::Range(0.1, 86400.0));
  app.add_flag("--allow-unused-tensors", options.allow_unused_tensors,
               "Load a checkpoint holding tensors the model does not read (known-harmless extras), "
               "with one warning listing them, instead of refusing it");
  app.add_option("--load-threads", options.load_threads,
                 "Threads per rank reading the checkpoint (default: the host's cores, at most 8)")
      ->check(CLI::Range(0, 256));
  add_device_options(app, options.device);
}

void add_device_options(CLI::App& app, DeviceOptions& options) {
  app.add_option("--device", options.device, "Where each rank computes: cpu (f32 reference) or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--dtype", options.dtype, "Compute dtype on cuda: bf16 or fp16")
      ->check(CLI::IsMember({"bf16", "fp16"}));
  app.add_option("--gpu-util", options.gpu_util,
                 "Fraction of each GPU's memory for weights, workspace and the KV cache")
      ->check(CLI::Range(0.05, 1.0));
  app.add_flag("--allow-shared-gpu", options.allow_shared_gpu,
               "With more ranks than GPUs on a node, stage collectives through host memory over "
               "MPI (slow; for testing TP on one GPU)");
}

RankDevice make_rank_device(const DeviceOptions& options, parallel::MpiCommunicator& mpi,
                            std::chrono::milliseconds timeout) {
  RankDevice device;
  if (options.device == "cpu") {
    device.backend = kernels::make_cpu_backend();
    device.model_comm = &mpi;
    return device;
  }
  if (options.device != "cuda") {
    raise(ErrorCode::kInvalidArgument, "--device {}: expected cpu or cuda", options.device);
  }
  const parallel::NodeTopology node = parallel::node_topology(MPI_COMM_WORLD);
  const int devices = kernels::cuda_device_count();
  const parallel::GpuCommChoice choice =
      parallel::choose_gpu_comm(node, devices, options.allow_shared_gpu);
  // Every rank learns whether every rank has a device before any of them creates a context.
  if (!mpi.all_ok(choice.ok())) {
    raise(ErrorCode::kUnavailable, "{}",
          choice.ok() ? "another rank has no usable GPU (its line says why)" : choice.error);
  }
  const DType dtype = options.dtype == "fp16" ? DType::kF16 : DType::kBF16;
  device.backend = kernels::make_cuda_backend(choice.device, dtype);
  device.device_comm = parallel::make_gpu_communicator(mpi, choice, device.backend->native_stream(), timeout);
  device.model_comm = device.device_comm.get();
  device.ranks_per_device = (node.local_size + devices - 1) / devices;
  log().info("rank {} on {} GPU {} ({}): {}", mpi.rank(), node.hostname, choice.device,
             dtype_name(dtype), choice.reason);
  return device;
}

namespace {

// KV blocks that fit `mib` MiB on every rank: K and V, every layer, of the rank holding the most
// KV heads (an uneven split gives ranks different counts; all ranks need the same number of
// blocks, since rank 0's scheduler hands out block indices for all of them). Raises
// kResourceExhausted (naming --kv-cache-mib) when not even one block fits.
int32_t kv_blocks_for(const runtime::ModelConfig& config, int tp_size,
                      const runtime::ModelOptions& options, double mib, int element_size) {
  int64_t per_token = 0;
  for (int rank = 0; rank < tp_size; ++rank) {
    per_token = std::max(per_token, runtime::kv_bytes_per_token(
                                        config, runtime::rank_shape(config, tp_size, rank),
                                        element_size, options.kv_cache_dtype));
  }
  const double block_bytes = static_cast<double>(per_token) * options.block_size;
  const auto blocks = static_cast<int32_t>(mib * 1048576.0 / block_bytes);
  if (blocks < 1) {
    raise(ErrorCode::kResourceExhausted, "--kv-cache-mib {}: not enough for one KV block of {} "
          "bytes", mib, block_bytes);
  }
  return blocks;
}

}  // namespace

int32_t kv_blocks_for_rank(const runtime::ModelConfig& config, int tp_size,
                           const runtime::ModelOptions& options, double mib,
                           const RankDevice& rank_device, const DeviceOptions& device) {
  const int element_size = dtype_size(rank_device.backend->compute_dtype());
  const size_t capacity = rank_device.backend->memory_capacity() /
                          static_cast<size_t>(std::max(1, rank_device.ranks_per_device));
  if (mib > 0 || capacity == 0) {
    return kv_blocks_for(config, tp_size, options, mib > 0 ? mib : 256.0, element_size);
  }
  runtime::PlanModel model{config.dir.filename().string(), config};
  runtime::MemoryPlanOptions plan_options;
  plan_options.tp_size = tp_size;
  plan_options.dtype_bytes = element_size;
  plan_options.gpu_memory_bytes = static_cast<int64_t>(capacity);
  plan_options.gpu_utilization = device.gpu_util;
  plan_options.model = options;
  const runtime::MemoryPlan plan = runtime::plan_memory(model, plan_options);
  if (!plan.fits) raise(ErrorCode::kResourceExhausted, "{}", plan.message);
  log().info("memory plan: weights {} + workspace {} per rank; KV pool {} blocks ({} tokens) in "
             "{:.0f}% of {} (this rank's share of the GPU)", runtime::format_bytes(static_cast<double>(plan.weight_bytes)),
             runtime::format_bytes(static_cast<double>(plan.workspace_bytes)), plan.kv_blocks,
             plan.kv_tokens, device.gpu_util * 100, runtime::format_bytes(static_cast<double>(capacity)));
  return static_cast<int32_t>(std::min<int64_t>(plan.kv_blocks, INT32_MAX));
}

int affinity_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 0;  // unknown: no limit applied
  return CPU_COUNT(&set);
}

int cpu_threads_for_rank(int hardware_cores, int local_ranks, int allowed_cores,
                         const char* openblas_env, std::string* warning) {
  const int share = std::max(1, hardware_cores / std::max(1, local_ranks));
  const int wanted = openblas_env != nullptr ? std::max(1, std::atoi(openblas_env)) : share;
  if (warning != nullptr) warning->clear();
  // Warned: threads asked for (OPENBLAS_NUM_THREADS) beyond the allowed cores, or a default
  // rank confined to a single core (mpirun's binding), not a scheduler's deliberate share
  // (srun --cpus-per-task), which silently caps the default.
  const bool confined = allowed_cores > 0 && (openblas_env != nullptr
                                                  ? allowed_cores < std::min(wanted, share)
                                                  : allowed_cores == 1 && share > 1);
  if (warning != nullptr && confined) {
    *warning = fmt::format(
        "this rank may run on only {} of the host's {} cores (its CPU affinity: mpirun binds each "
        "rank to one core by default when it starts one or two), not the {} its threads would "
        "use; launch with `mpirun --bind-to none` (launch/mpirun.sh does) or "
        "`--map-by slot:PE={}`",
        allowed_cores, hardware_cores, std::min(wanted, share), share);
  }
  // An explicit OPENBLAS_NUM_THREADS is kept; the default is capped by the affinity.
  if (openblas_env != nullptr || allowed_cores <= 0) return wanted;
  return std::min(wanted, allowed_cores);
}

void configure_cpu_threads(const parallel::MpiSession& session) {
  const char* env = std::getenv("OPENBLAS_NUM_THREADS");
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::string warning;
  const int threads =
      cpu_threads_for_rank(cores, session.local_size(), affinity_cores(), env, &warning);
  if (!warning.empty()) log().warn("{}", warning);
  if (env == nullptr) openblas_set_num_threads(threads);
}

namespace {

// Fault injection for the end-to-end tests: TPSERVE_FAULT_HANG_RANK=r makes rank r stop
// responding before it reports its phase outcome, as a rank stuck in a driver call would.
void hang_if_asked(int rank) {
  const char* value = std::getenv("TPSERVE_FAULT_HANG_RANK");
  if (value == nullptr || std::atoi(value) != rank) return;
  log().warn("fault injection: rank {} hangs (TPSERVE_FAULT_HANG_RANK)", rank);
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

}  // namespace

bool run_phase(parallel::Communicator& comm, const char* name, const std::function<void()>& phase) {
  bool failed = false;
  try {
    phase();
  } catch (const Error& e) {
    log().error("{}", e.what());
    failed = true;
  } catch (const std::exception& e) {
    log().error("{} failed: {}", name, e.what());
    failed = true;
  }
  hang_if_asked(comm.rank());
  const bool all_ok = comm.all_ok(!failed);
  if (!all_ok && !failed && comm.rank() == 0) {
    log().error("{} failed on another rank (its line above says why)", name);
  }
  return all_ok;
}

std::unique_ptr<runtime::Model> load_model(runtime::ModelConfig config,
                                           const runtime::ModelOptions& options,
                                           parallel::Communicator& comm, kernels::Backend& backend,
                                           const std::string& lora_dir) {
  const auto start = std::chrono::steady_clock::now();
  runtime::RankShape shape = runtime::rank_shape(config, comm.size(), comm.rank());
  auto checkpoint = runtime::open_checkpoint(config);
  std::unique_ptr<runtime::LoraAdapter> lora;
  if (!lora_dir.empty()) {
    lora = runtime::LoraAdapter::open(lora_dir);
    log().info("merging LoRA adapter {}: {} target weights, r {}, scaling {}", lora_dir,
               lora->num_targets(), lora->rank(), lora->scaling());
  }
  auto model = std::make_unique<runtime::Model>(std::move(config), shape, backend, comm, options);
  int last_decile = -1;
  model->load(*checkpoint, [&](const runtime::LoadProgress& p) {
    const int decile = p.bytes_total == 0 ? 10 : static_cast<int>(10 * p.bytes_done / p.bytes_total);
    if (decile == last_decile) return;
    last_decile = decile;
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    log().info("loading weights: {:3d}% ({:.1f} / {:.1f} MiB on this rank, {} / {} tensors, "
               "{:.2f} GB/s read from the checkpoint)",
               decile * 10, p.bytes_done / 1048576.0, p.bytes_total / 1048576.0, p.weights_done,
               p.weights_total, p.file_bytes_read / 1e9 / std::max(elapsed, 1e-9));
  }, lora.get());
  if (!model->unused_tensors().empty() && comm.rank() == 0) {
    log().warn("--allow-unused-tensors: ignoring {} checkpoint tensor(s) the model does not read: {}",
               model->unused_tensors().size(), fmt::join(model->unused_tensors(), ", "));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log().info("loaded {} (tp {}): {:.1f} MiB of weights and {:.1f} MiB of KV cache per rank in "
             "{:.2f} s ({:.2f} GB/s read from the checkpoint)",
             model->config().architecture, comm.size(), model->weight_bytes() / 1048576.0,
             model->kv_cache_bytes() / 1048576.0, seconds,
             checkpoint->bytes_read() / 1e9 / std::max(seconds, 1e-9));
  return model;
}

namespace {

// The preset's shape with synthetic weights (WeightStore::load_synthetic), the same on every rank.
std::unique_ptr<runtime::Model> load_synthetic_model(runtime::ModelConfig config,
                                                     const runtime::ModelOptions& options,
                                                     parallel::Communicator& comm,
                                                     kernels::Backend& backend,
                                                     const std::string& name) {
  constexpr uint64_t kSeed = 1;
  const auto start = std::chrono::steady_clock::now();
  const runtime::RankShape shape = runtime::rank_shape(config, comm.size(), comm.rank());
  auto model = std::make_unique<runtime::Model>(std::move(config), shape, backend, comm, options);
  int last_decile = -1;
  model->load_synthetic(kSeed, [&](const runtime::LoadProgress& p) {
    const int decile = p.bytes_total == 0 ? 10 : static_cast<int>(10 * p.bytes_done / p.bytes_total);
    if (decile == last_decile) return;
    last_decile = decile;
    log().info("synthetic weights: {:3d}% ({:.1f} / {:.1f} MiB on this rank)", decile * 10,
               p.bytes_done / 1048576.0, p.bytes_total / 1048576.0);
  });
  log().info("synthetic {} (tp {}): {:.1f} MiB of weights and {:.1f} MiB of KV cache per rank in "
             "{:.2f} s; token-id prompts only (no tokenizer)",
             name, comm.size(), model->weight_bytes() / 1048576.0,
             model->kv_cache_bytes() / 1048576.0,
             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return model;
}

}  // namespace

void load_serving_rank(ServingRank& rank, parallel::MpiCommunicator& comm,
                       const ServingRankOptions& options) {
  options.rank.kv_dtype();  // a refused --kv-cache-dtype before any device is touched
  const bool synthetic = !options.synthetic.preset.empty();
  if (synthetic == !options.model_dir.empty()) {
    raise(ErrorCode::kInvalidArgument, "give exactly one of --model DIR and --synthetic PRESET");
  }
  if (!synthetic && (options.synthetic.quant != "none" || options.synthetic.group_size != 128)) {
    raise(ErrorCode::kInvalidArgument, "--quant and --group-size quantize a --synthetic preset; "
          "a checkpoint's quantization is its own (config.json's quantization_config)");
  }
  if (synthetic && !options.lora_dir.empty()) {
    raise(ErrorCode::kInvalidArgument, "--lora merges into a checkpoint's weights: it needs "
          "--model, not --synthetic");
  }
  runtime::PlanModel preset;
  if (synthetic) preset = read_model_source(options.synthetic);  // before any device is touched
  rank.device = make_rank_device(options.rank.device, comm, options.rank.collective_timeout());
  runtime::ModelConfig config =
      synthetic ? preset.config : runtime::read_model_config(options.model_dir);
  runtime::fit_quantization_to(config, *rank.device.backend);  // before the memory plan
  runtime::ModelOptions model_options = options.rank.model_options();
  model_options.max_seqs = options.max_seqs;
  // One next-token row per sequence, and one per n-gram draft it may send to be verified.
  model_options.max_logit_rows = options.max_seqs * (1 + options.speculative_ngram);
  model_options.num_kv_blocks = kv_blocks_for_rank(config, comm.size(), model_options,
                                                   options.kv_cache_mib, rank.device,
                                                   options.rank.device);
  if (synthetic) {
    rank.model = load_synthetic_model(std::move(config), model_options, *rank.device.model_comm,
                                      *rank.device.backend, preset.name);
    return;
  }
  if (comm.rank() == 0) {
    try {
      rank.tokenizer = load_tokenizer(options.model_dir);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kNotFound) throw;
      log().warn("no tokenizer ({}): only token-id prompts will be served", e.what());
    }
  }
  rank.model = load_model(std::move(config), model_options, *rank.device.model_comm,
                          *rank.device.backend, options.lora_dir);
}

}  // namespace tpserve::launch
