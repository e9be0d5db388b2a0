// Prometheus metrics over HTTP on rank 0 (GET /metrics, text exposition format 0.0.4): queue
// depth, running sequences, KV blocks used and free, prompt and generated tokens, steps, and the
// time-to-first-token and inter-token latency histograms.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "runtime/engine/engine.h"

namespace httplib {
class Server;
}

namespace tpserve::rpc {

// The exposition text for the engine's current state.
std::string prometheus_text(const runtime::Engine& engine);

class MetricsServer {
 public:
  // Listens on host:port (port 0 picks one) in a thread of its own.
  MetricsServer(const runtime::Engine& engine, const std::string& host, int port);
  ~MetricsServer();

  int port() const { return port_; }

 private:
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace tpserve::rpc
