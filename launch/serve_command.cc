// `tpserve serve`: the gRPC server on rank 0 (and, with --http-port, the OpenAI-compatible HTTP
// API and web chat), every rank running the engine's steps.
//
//   mpirun -np 2 tpserve serve --model DIR --port 50051 [--http-port 8000]
//
// SIGTERM or SIGINT to rank 0 (or to every rank, as Slurm's scancel does; the others wait for
// rank 0), or SIGUSR1 to mpirun (it forwards that one to every rank; launch/mpirun.sh sends it when
// it gets SIGTERM or Ctrl-C): health turns NOT_SERVING, new requests are refused with UNAVAILABLE,
// in-flight ones get --drain-timeout seconds to finish, then every rank exits 0. (SIGTERM to a bare
// mpirun kills the ranks a second after forwarding it: no time to drain.)
// A peer rank that dies or hangs: rank 0 logs one line naming it, every in-flight request fails
// with UNAVAILABLE and that reason, and rank 0 ends the job with MPI_Abort (status 75).
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "common/error.h"
#include "common/log.h"
#include "launch/command.h"
#include "launch/engine_flags.h"
#include "launch/rank_setup.h"
#include "rpc/http_server.h"
#include "rpc/metrics_server.h"
#include "rpc/server.h"
#include "runtime/engine/engine.h"
#include "runtime/tokenizer/tokenizer.h"

namespace tpserve::launch {

namespace {

struct ServeOptions {
  std::string model_dir;
  ModelSource synthetic;  // --synthetic PRESET [--quant Q --group-size G]
  std::string host = "127.0.0.1";
  int port = 50051;
  int max_seqs = 32;
  double kv_cache_mib = 0;  // 0: from the memory plan on a GPU, 256 MiB on the CPU
  int max_queued = 256;
  double drain_timeout_s = 30;
  int max_message_mib = 4;
  int metrics_port = -1;  // -1: no metrics endpoint
  int http_port = -1;     // -1: no OpenAI-compatible HTTP front end
  std::string api_key;    // --api-key / TPSERVE_API_KEY: both front ends require it
  std::string tls_cert, tls_key;
  std::string lora_dir;   // --lora: PEFT adapter merged at load
  std::string chat_template_file;  // --chat-template: instead of the model's own template
  runtime::EngineOptions engine;   // KV admission, prefix caching (launch/engine_flags.h)
  RankOptions rank;
};

std::atomic<bool> g_stop_requested{false};

extern "C" void on_stop_signal(int) { g_stop_requested.store(true); }

// SIGTERM and SIGINT to a rank drain; so does SIGUSR1, which mpirun forwards to every rank without
// ending the job (launch/mpirun.sh turns a SIGTERM or Ctrl-C of the job into one).
void install_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = &on_stop_signal;
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGTERM, SIGINT, SIGUSR1}) sigaction(sig, &action, nullptr);
}

// Exit statuses (README, "Exit codes"). A peer failure ends the job through MPI_Abort with
// kExitPeerFailure, which mpirun passes on.
constexpr int kExitStartFailed = 1;
constexpr int kExitPeerFailure = 75;

// Rank 0's front ends: the engine, the gRPC server and the optional metrics endpoint.
struct FrontEnd {
  std::unique_ptr<runtime::Engine> engine;
  std::unique_ptr<rpc::Server> server;
  std::unique_ptr<rpc::MetricsServer> metrics;
  std::unique_ptr<rpc::HttpServer> http;
};

bool loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.starts_with("127.");
}

// The served model's name in the OpenAI API: its directory's name, as vLLM names it by its path.
std::string model_name(const std::string& model_dir) {
  std::filesystem::path path(model_dir);
  if (!path.has_filename()) path = path.parent_path();
  return path.filename().string();
}

void start_http(FrontEnd& front, const ServeOptions& options, ServingRank& rank) {
  rpc::HttpOptions http;
  http.host = options.host;
  http.port = options.http_port;
  http.api_key = options.api_key;
  http.tls_cert = options.tls_cert;
  http.tls_key = options.tls_key;
  // Every request the engine can hold may be a stream holding a thread (rpc/http_server.h).
  http.threads = options.max_queued + 64;
  http.max_body_bytes = static_cast<size_t>(options.max_message_mib) << 20;
  http.model_name = options.synthetic.preset.empty() ? model_name(options.model_dir)
                                                     : options.synthetic.preset;
  front.http = std::make_unique<rpc::HttpServer>(*front.engine, *rank.model,
                                                 front.server->prompt_context(), http);
  log().info("OpenAI-compatible HTTP on {}://{}:{}/v1 (web chat at /)",
             options.tls_cert.empty() ? "http" : "https", options.host, front.http->port());
}

void start_front_end(FrontEnd& front, const ServeOptions& options, ServingRank& rank,
                     parallel::Communicator& comm) {
  runtime::EngineOptions engine_options = options.engine;
  engine_options.max_queued_requests = options.max_queued;
  front.engine = std::make_unique<runtime::Engine>(*rank.model, comm, rank.tokenizer.get(),
                                                   engine_options);
  rpc::ServerOptions server_options;
  server_options.host = options.host;
  server_options.port = options.port;
  server_options.max_message_bytes = options.max_message_mib << 20;
  server_options.backend = std::string(rank.device.backend->name());
  server_options.dtype = std::string(dtype_name(rank.device.backend->compute_dtype()));
  server_options.chat_template_file = options.chat_template_file;
  server_options.api_key = options.api_key;
  server_options.tls_cert = options.tls_cert;
  server_options.tls_key = options.tls_key;
  if (!loopback(options.host) && options.api_key.empty()) {
    log().warn("--host {} is reachable from other machines and no --api-key is set: anyone who "
               "can reach the port can use the server", options.host);
  }
  front.server = std::make_unique<rpc::Server>(*front.engine, *rank.model, rank.tokenizer.get(),
                                               server_options);
  if (options.metrics_port >= 0) {
    front.metrics = std::make_unique<rpc::MetricsServer>(*front.engine, options.host,
                                                         options.metrics_port);
    log().info("metrics on http://{}:{}/metrics", options.host, front.metrics->port());
  }
  if (options.http_port >= 0) start_http(front, options, rank);
}

int run_serve(const ServeOptions& options) {
  install_signal_handlers();
  parallel::MpiSession session;
  parallel::MpiCommunicator comm(MPI_COMM_WORLD, options.rank.collective_timeout());
  configure_cpu_threads(session);
  ServingRank rank;
  const bool loaded = run_phase(comm, "load", [&] {
    ServingRankOptions serving;
    serving.model_dir = options.model_dir;
    serving.synthetic = options.synthetic;
    serving.lora_dir = options.lora_dir;
    serving.max_seqs = options.max_seqs;
    serving.kv_cache_mib = options.kv_cache_mib;
    serving.rank = options.rank;
    serving.speculative_ngram = options.engine.speculative_ngram;
    load_serving_rank(rank, comm, serving);
  });
  if (!loaded) return kExitStartFailed;
  // Rank 0 opens its ports (one in use is an error) before any rank starts serving, so a refusal
  // ends every rank with the same verdict.
  FrontEnd front;
  const bool listening = run_phase(comm, "listen", [&] {
    if (comm.rank() == 0) start_front_end(front, options, rank, comm);
  });
  if (!listening) return kExitStartFailed;
  comm.set_timeout(options.rank.step_timeout());
  if (comm.rank() != 0) {
    runtime::Engine::follow(*rank.model, comm);
    return 0;
  }
  runtime::Engine& engine = *front.engine;
  rpc::Server& server = *front.server;
  // One line on stdout that scripts (and the end-to-end tests) read for the ports.
  std::printf("serving %s on %s:%d (tp %d, metrics port %d, http port %d, pid %d)\n",
              rank.model->config().architecture.c_str(), options.host.c_str(), server.port(),
              comm.size(), front.metrics ? front.metrics->port() : -1,
              front.http ? front.http->port() : -1, static_cast<int>(getpid()));
  std::fflush(stdout);
  log().info("serving on {}:{}; SIGTERM drains and exits", options.host, server.port());
  std::thread watcher([&] {
    while (!g_stop_requested.load() && engine.accepting()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!engine.accepting()) return;  // the engine stopped itself (a peer failed)
    log().info("stop requested: draining for up to {} s", options.drain_timeout_s);
    server.set_serving(false);
    engine.shutdown(std::chrono::milliseconds(static_cast<int64_t>(options.drain_timeout_s * 1000)));
  });
  // Rank 0 answers its clients before the job ends: a dead or hung peer throws here.
  comm.set_throw_on_peer_failure(true);
  try {
    engine.run();
  } catch (const parallel::PeerFailure& failure) {
    log().critical("ending the job: {}", failure.what());
    watcher.join();
    server.set_serving(false);
    // The handlers already hold their requests' UNAVAILABLE answer; let them send it.
    server.shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    if (front.http) front.http->stop();
    parallel::abort_job(kExitPeerFailure);
  }
  g_stop_requested.store(true);
  watcher.join();
  server.shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  if (front.http) front.http->stop();
  log().info("drained; exiting");
  return 0;
}

}  // namespace

void register_serve_command(CLI::App& app, CommandRunner& runner) {
  auto options = std::make_shared<ServeOptions>();
  CLI::App* sub = app.add_subcommand("serve", "Serve generation requests over gRPC (rank 0)");
  sub->add_option("--model", options->model_dir, "Hugging Face model directory or GGUF file");
  sub->add_option("--synthetic", options->synthetic.preset,
                  "Instead of --model: serve a shape preset (configs/presets) with random weights "
                  "and no tokenizer, for load tests at real scale (token-id prompts)");
  sub->add_option("--quant", options->synthetic.quant,
                  "--synthetic: quantize the preset's linear weights: none, gptq-int4, gptq-int8 "
                  "or awq-int4");
  sub->add_option("--group-size", options->synthetic.group_size,
                  "--synthetic --quant: input columns per group (-1: one group per row)");
  options->synthetic.preset_flag = "--synthetic";
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
  sub->add_option("--http-port", options->http_port,
                  "Serve the OpenAI-compatible HTTP API and the web chat on this port (0 picks "
                  "one; default off)")
      ->check(CLI::Range(0, 65535));
  sub->add_option("--api-key", options->api_key,
                  "Require 'Authorization: Bearer KEY' on HTTP and gRPC (health stays open)")
      ->envname("TPSERVE_API_KEY");
  auto* cert = sub->add_option("--tls-cert", options->tls_cert,
                               "PEM certificate: serve HTTPS and gRPC over TLS (with --tls-key)")
                   ->check(CLI::ExistingFile);
  auto* key = sub->add_option("--tls-key", options->tls_key, "PEM private key of --tls-cert")
                  ->check(CLI::ExistingFile);
  cert->needs(key);
  key->needs(cert);
  add_engine_flags(*sub, options->engine);
  add_rank_options(*sub, options->rank);
  sub->callback([options, &runner] { runner = [options] { return run_serve(*options); }; });
}

}  // namespace tpserve::launch
