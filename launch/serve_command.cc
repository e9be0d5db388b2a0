// `tpserve serve`: the gRPC server on rank 0, every rank running the engine's steps.
//
//   mpirun -np 2 tpserve serve --model DIR --port 50051
//
// SIGTERM or SIGINT to rank 0 (or to every rank, as Slurm's scancel does; the others wait for
// rank 0): health turns NOT_SERVING, new requests are refused with UNAVAILABLE, in-flight ones get
// --drain-timeout seconds to finish, then every rank exits 0. (mpirun forwards a SIGTERM it
// receives, and the ranks drain the same way, but mpirun itself then reports the job as signalled.)
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <thread>

#include "common/error.h"
#include "common/log.h"
#include "launch/command.h"
#include "launch/rank_setup.h"
#include "rpc/metrics_server.h"
#include "rpc/server.h"
#include "runtime/engine/engine.h"
#include "runtime/tokenizer/tokenizer.h"

namespace tpserve::launch {

namespace {

struct ServeOptions {
  std::string model_dir;
  std::string host = "127.0.0.1";
  int port = 50051;
  int max_seqs = 32;
  double kv_cache_mib = 0;  // 0: from the memory plan on a GPU, 256 MiB on the CPU
  int max_queued = 256;
  double drain_timeout_s = 30;
  int max_message_mib = 4;
  int metrics_port = -1;  // -1: no metrics endpoint
  std::string lora_dir;   // --lora: PEFT adapter merged at load
  std::string chat_template_file;  // --chat-template: instead of the model's own template
  RankOptions rank;
};

std::atomic<bool> g_stop_requested{false};

extern "C" void on_stop_signal(int) { g_stop_requested.store(true); }

void install_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = &on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
}

int run_serve(const ServeOptions& options) {
  install_signal_handlers();
  parallel::MpiSession session;
  parallel::MpiCommunicator comm(MPI_COMM_WORLD, options.rank.collective_timeout());
  configure_cpu_threads(session);
  ServingRank rank;
  const bool loaded = run_phase(comm, "load", [&] {
    load_serving_rank(rank, comm, {options.model_dir, options.lora_dir, options.max_seqs,
                                   options.kv_cache_mib, options.rank});
  });
  if (!loaded) return 1;
  comm.set_timeout(options.rank.step_timeout());
  if (comm.rank() != 0) {
    runtime::Engine::follow(*rank.model, comm);
    return 0;
  }
  runtime::EngineOptions engine_options;
  engine_options.max_queued_requests = options.max_queued;
  runtime::Engine engine(*rank.model, comm, rank.tokenizer.get(), engine_options);
  rpc::ServerOptions server_options;
  server_options.address = options.host + ":" + std::to_string(options.port);
  server_options.max_message_bytes = options.max_message_mib << 20;
  server_options.backend = std::string(rank.device.backend->name());
  server_options.dtype = std::string(dtype_name(rank.device.backend->compute_dtype()));
  server_options.chat_template_file = options.chat_template_file;
  std::unique_ptr<rpc::Server> server;
  try {
    server = std::make_unique<rpc::Server>(engine, *rank.model, rank.tokenizer.get(), server_options);
  } catch (const Error& e) {
    log().error("{}", e.what());
    engine.shutdown(std::chrono::milliseconds(0));
    engine.run();  // tells the other ranks to stop
    return 1;
  }
  std::unique_ptr<rpc::MetricsServer> metrics;
  if (options.metrics_port >= 0) {
    metrics = std::make_unique<rpc::MetricsServer>(engine, options.host, options.metrics_port);
    log().info("metrics on http://{}:{}/metrics", options.host, metrics->port());
  }
  // One line on stdout that scripts (and the end-to-end tests) read for the ports.
  std::printf("serving %s on %s:%d (tp %d, metrics port %d, pid %d)\n",
              rank.model->config().architecture.c_str(), options.host.c_str(), server->port(),
              comm.size(), metrics ? metrics->port() : -1, static_cast<int>(getpid()));
  std::fflush(stdout);
  log().info("serving on {}:{}; SIGTERM drains and exits", options.host, server->port());
  std::thread watcher([&] {
    while (!g_stop_requested.load() && engine.accepting()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    log().info("stop requested: draining for up to {} s", options.drain_timeout_s);
    server->set_serving(false);
    engine.shutdown(std::chrono::milliseconds(static_cast<int64_t>(options.drain_timeout_s * 1000)));
  });
  engine.run();
  g_stop_requested.store(true);
  watcher.join();
  server->shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  log().info("drained; exiting");
  return 0;
}

}  // namespace

void register_serve_command(CLI::App& app, CommandRunner& runner) {
  auto options = std::make_shared<ServeOptions>();
  CLI::App* sub = app.add_subcommand("serve", "Serve generation requests over gRPC (rank 0)");
  sub->add_option("--model", options->model_dir, "Hugging Face model directory")->required();
  sub->add_option("--host", options->host, "Address to listen on");
  sub->add_option("--port", options->port, "Port (0 picks a free one)")->check(CLI::Range(0, 65535));
  sub->add_option("--max-seqs", options->max_seqs, "Sequences batched in one step")
      ->check(CLI::Range(1, 4096));
  sub->add_option("--kv-cache-mib", options->kv_cache_mib,
                  "KV cache per rank, MiB (default: what the memory plan leaves on a GPU, 256 on CPU)")
      ->check(CLI::Range(0.0, 1e7));
  sub->add_option("--max-queued", options->max_queued,
                  "Requests in flight before new ones get RESOURCE_EXHAUSTED")
      ->check(CLI::Range(1, 1 << 20));
  sub->add_option("--drain-timeout", options->drain_timeout_s,
                  "Seconds in-flight requests get after SIGTERM")
      ->check(CLI::Range(0.0, 3600.0));
  sub->add_option("--max-message-mib", options->max_message_mib, "gRPC message size limit, MiB")
      ->check(CLI::Range(1, 1024));
  sub->add_option("--lora", options->lora_dir,
                  "PEFT LoRA adapter directory, merged into the weights at load");
  sub->add_option("--chat-template", options->chat_template_file,
                  "Jinja chat template file, used instead of the one the model ships");
  sub->add_option("--metrics-port", options->metrics_port,
                  "Serve Prometheus metrics on this port (0 picks one; default off)")
      ->check(CLI::Range(0, 65535));
  add_rank_options(*sub, options->rank);
  sub->callback([options, &runner] { runner = [options] { return run_serve(*options); }; });
}

}  // namespace tpserve::launch
