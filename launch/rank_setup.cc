#include "launch/rank_setup.h"

#include <cblas.h>

#include <cstdlib>
#include <thread>

#include "common/error.h"
#include "common/log.h"
#include "runtime/lora.h"
#include "runtime/safetensors.h"

namespace tpserve::launch {

runtime::ModelOptions RankOptions::model_options() const {
  runtime::ModelOptions options;
  options.max_tokens_per_step = max_tokens_per_step;
  options.block_size = block_size;
  return options;
}

void add_rank_options(CLI::App& app, RankOptions& options) {
  app.add_option("--max-tokens-per-step", options.max_tokens_per_step,
                 "Token budget of one step (prefill is chunked to it)")
      ->check(CLI::Range(1, 1 << 16));
  app.add_option("--block-size", options.block_size, "KV cache positions per block")
      ->check(CLI::Range(1, 1024));
  app.add_option("--collective-timeout", options.collective_timeout_s,
                 "Seconds a collective may wait for a peer while loading before the job is ended")
      ->check(CLI::Range(0.1, 86400.0));
  app.add_option("--step-timeout", options.step_timeout_s,
                 "Seconds a collective may wait for a peer once running before the job is ended")
      ->check(CLI::Range(0.1, 86400.0));
}

void configure_cpu_threads(const parallel::MpiSession& session) {
  if (std::getenv("OPENBLAS_NUM_THREADS") != nullptr) return;
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  openblas_set_num_threads(std::max(1, cores / session.local_size()));
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
  auto checkpoint = runtime::Checkpoint::open(config.dir);
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
    log().info("loading weights: {:3d}% ({:.1f} / {:.1f} MiB on this rank, {} / {} tensors)",
               decile * 10, p.bytes_done / 1048576.0, p.bytes_total / 1048576.0, p.weights_done,
               p.weights_total);
  }, lora.get());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log().info("loaded {} (tp {}): {:.1f} MiB of weights and {:.1f} MiB of KV cache per rank in "
             "{:.2f} s ({:.2f} GB/s read from the checkpoint)",
             model->config().architecture, comm.size(), model->weight_bytes() / 1048576.0,
             model->kv_cache_bytes() / 1048576.0, seconds,
             checkpoint->bytes_read() / 1e9 / std::max(seconds, 1e-9));
  return model;
}

}  // namespace tpserve::launch
