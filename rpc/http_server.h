// The OpenAI-compatible HTTP front end on rank 0 (serve --http-port): /v1/chat/completions,
// /v1/completions (whole or as server-sent events), /v1/models, /health, /tokenize, /detokenize,
// and the web chat page at /. A thin layer: each request becomes the gRPC front end's wire message
// (openai_request.h), then the same conversion (convert.h) and Engine::submit as a gRPC call.
//
// Threads: cpp-httplib serves each connection on a thread of its pool for the connection's whole
// life, a streamed reply included. The pool holds `threads` threads (serve sets max_queued + 64:
// every request the engine can hold may stream, with room for keep-alive connections and health
// checks); connections beyond that wait in its task queue, they are not refused.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "rpc/convert.h"
#include "runtime/engine/engine.h"
#include "runtime/model/model.h"

namespace httplib {
class Server;
}

namespace tpserve::rpc {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                  // 0 picks a free port
  std::string api_key;              // empty: no key required
  std::string tls_cert, tls_key;    // PEM files: HTTPS when both are set
  int threads = 320;                // connections served at once
  size_t max_body_bytes = 4 << 20;  // larger bodies: 413
  std::string model_name;           // what /v1/models lists and requests may name
};

class HttpServer {
 public:
  HttpServer(runtime::Engine& engine, const runtime::Model& model, PromptContext prompts,
             HttpOptions options);
  ~HttpServer();

  int port() const { return port_; }
  // Stops accepting connections and ends the open ones.
  void stop();

 private:
  class Handlers;

  std::unique_ptr<Handlers> handlers_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace tpserve::rpc
