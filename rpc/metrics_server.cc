#include "rpc/metrics_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <fmt/format.h>

#include "common/error.h"
#include "rpc/listen_probe.h"

namespace tpserve::rpc {

namespace {

void gauge(std::string& out, const char* name, const char* help, double value) {
  out += fmt::format("# HELP {0} {1}\n# TYPE {0} gauge\n{0} {2}\n", name, help, value);
}

void counter(std::string& out, const char* name, const char* help, double value) {
  out += fmt::format("# HELP {0} {1}\n# TYPE {0} counter\n{0} {2}\n", name, help, value);
}

void histogram(std::string& out, const char* name, const char* help,
               const runtime::Histogram::Snapshot& s) {
  out += fmt::format("# HELP {0} {1}\n# TYPE {0} histogram\n", name, help);
  for (size_t i = 0; i < s.bounds.size(); ++i) {
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, s.bounds[i], s.cumulative_counts[i]);
  }
  out += fmt::format("{0}_bucket{{le=\"+Inf\"}} {1}\n{0}_sum {2}\n{0}_count {1}\n", name, s.count,
                     s.sum);
}

}  // namespace

std::string prometheus_text(const runtime::Engine& engine) {
  const runtime::EngineStats stats = engine.stats();
  std::string out;
  gauge(out, "tpserve_requests_in_flight", "Requests accepted and not yet finished.",
        static_cast<double>(stats.queued_requests));
  gauge(out, "tpserve_sequences_waiting", "Sequences queued for admission (queue depth).",
        static_cast<double>(stats.waiting_sequences));
  gauge(out, "tpserve_sequences_running", "Sequences in the running batch.",
        static_cast<double>(stats.running_sequences));
  gauge(out, "tpserve_kv_blocks_used", "KV cache blocks in use (per rank).", stats.kv_blocks_used);
  gauge(out, "tpserve_kv_blocks_free", "KV cache blocks free (per rank).",
        stats.kv_blocks_total - stats.kv_blocks_used);
  counter(out, "tpserve_prompt_tokens_total", "Prompt tokens admitted.",
          static_cast<double>(stats.prompt_tokens));
  counter(out, "tpserve_generated_tokens_total", "Tokens generated.",
          static_cast<double>(stats.generated_tokens));
  counter(out, "tpserve_steps_total", "Engine steps run.", static_cast<double>(stats.steps));
  counter(out, "tpserve_preemptions_total", "Sequences preempted when KV blocks ran out.",
          static_cast<double>(stats.preemptions));
  counter(out, "tpserve_prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.",
          static_cast<double>(stats.prefix_query_tokens));
  counter(out, "tpserve_prefix_cache_hits_total", "Prompt tokens whose K/V came from the prefix cache.",
          static_cast<double>(stats.prefix_hit_tokens));
  counter(out, "tpserve_spec_draft_tokens_total", "N-gram draft tokens verified.",
          static_cast<double>(stats.draft_tokens));
  counter(out, "tpserve_spec_accepted_tokens_total", "N-gram draft tokens accepted.",
          static_cast<double>(stats.accepted_draft_tokens));
  gauge(out, "tpserve_kv_blocks_cached", "KV cache blocks holding a reusable prefix (per rank).",
        stats.kv_blocks_cached);
  histogram(out, "tpserve_time_to_first_token_seconds", "From request arrival to its first token.",
            engine.time_to_first_token().snapshot());
  histogram(out, "tpserve_inter_token_latency_seconds", "Between consecutive tokens of a sequence.",
            engine.inter_token_latency().snapshot());
  return out;
}

MetricsServer::MetricsServer(const runtime::Engine& engine, const std::string& host, int port)
    : http_(std::make_unique<httplib::Server>()) {
  http_->Get("/metrics", [&engine](const httplib::Request&, httplib::Response& response) {
    response.set_content(prometheus_text(engine), "text/plain; version=0.0.4");
  });
  // cpp-httplib sets SO_REUSEPORT by default, which lets a second server share a port in use.
  http_->set_socket_options([](int fd) {
    const int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  port_ = port == 0 ? http_->bind_to_any_port(host) : (http_->bind_to_port(host, port) ? port : -1);
  if (port_ <= 0) {
    raise(ErrorCode::kUnavailable, "--metrics-port {}: cannot listen on {}:{} for metrics: {}", port,
          host, port, why_cannot_listen(host, port));
  }
  thread_ = std::thread([this] { http_->listen_after_bind(); });
}

MetricsServer::~MetricsServer() {
  http_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace tpserve::rpc
