// The gRPC front end on rank 0: tpserve.v1.Generation, grpc.health.v1.Health (SERVING while the
// engine accepts work, NOT_SERVING once it drains) and server reflection. With an API key every
// Generation call needs it (UNAUTHENTICATED otherwise); health and reflection stay open. Handlers run on gRPC's
// threads and talk to the engine only through Engine::submit and the request streams.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "rpc/convert.h"
#include "runtime/engine/engine.h"
#include "runtime/model/model.h"
#include "runtime/tokenizer/chat_template.h"
#include "runtime/tokenizer/tokenizer.h"

namespace tpserve::rpc {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 50051;                 // 0 picks a free port; one in use is an error (no SO_REUSEPORT)
  int max_message_bytes = 4 << 20;  // larger requests/responses: RESOURCE_EXHAUSTED
  std::string backend = "cpu";              // reported by ModelInfo
  std::string dtype = "F32";
  std::string chat_template_file;  // --chat-template: a Jinja file used instead of the model's own
  std::string api_key;             // --api-key: required as "authorization: Bearer KEY" metadata
  std::string tls_cert, tls_key;   // PEM files: TLS when both are set
};

class Server {
 public:
  // `tokenizer` may be null (token-id prompts only).
  Server(runtime::Engine& engine, const runtime::Model& model, const runtime::Tokenizer* tokenizer,
         const ServerOptions& options);
  ~Server();

  int port() const { return port_; }
  // The tokenizer and chat template requests are converted with (the HTTP front end shares them).
  const PromptContext& prompt_context() const { return prompts_; }
  void set_serving(bool serving);
  // Stops accepting calls; waits for running handlers until `deadline`, then cancels them.
  void shutdown(std::chrono::system_clock::time_point deadline);

 private:
  class GenerationService;

  std::unique_ptr<runtime::ChatTemplate> chat_template_;
  PromptContext prompts_;
  std::unique_ptr<GenerationService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace tpserve::rpc
