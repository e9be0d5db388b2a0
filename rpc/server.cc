#include "rpc/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <cstdint>
#include <map>

#include "common/log.h"
#include "rpc/api_key.h"
#include "rpc/convert.h"
#include "rpc/listen_probe.h"
#include "rpc/status.h"
#include "rpc/tls_files.h"
#include "tpserve/v1/generation.grpc.pb.h"

namespace tpserve::rpc {

namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(50);

void append(v1::Choice& choice, const runtime::SequenceDelta& delta) {
  choice.set_index(delta.index);
  choice.mutable_text()->append(delta.text);
  for (int32_t id : delta.token_ids) choice.add_token_ids(id);
  for (float logprob : delta.logprobs) choice.add_logprobs(logprob);
  for (const auto& alternatives : delta.top_logprobs) {
    v1::TopLogprobs* top = choice.add_top_logprobs();
    for (const auto& a : alternatives) {
      v1::TokenLogprob* entry = top->add_alternatives();
      entry->set_token_id(a.token_id);
      entry->set_logprob(a.logprob);
    }
  }
  if (delta.finish_reason != runtime::FinishReason::kNone) {
    choice.set_finish_reason(runtime::finish_reason_name(delta.finish_reason));
  }
}

}  // namespace

class Server::GenerationService final : public v1::Generation::Service {
 public:
  GenerationService(runtime::Engine& engine, const runtime::Model& model, PromptContext prompts,
                    ServerOptions options)
      : engine_(engine), model_(model), prompts_(prompts), options_(std::move(options)) {}

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        v1::GenerateResponse* response) override {
    if (!authorized(*context)) return unauthenticated();
    std::map<int32_t, v1::Choice> choices;
    grpc::Status status = run(context, *request, [&](const runtime::RequestEvent& event) {
      for (const auto& delta : event.deltas) append(choices[delta.index], delta);
      if (event.done) set_usage(*response, event.usage);
      return true;
    });
    for (auto& [index, choice] : choices) *response->add_choices() = std::move(choice);
    return status;
  }

  grpc::Status GenerateStream(grpc::ServerContext* context, const v1::GenerateRequest* request,
                              grpc::ServerWriter<v1::GenerateResponse>* writer) override {
    if (!authorized(*context)) return unauthenticated();
    return run(context, *request, [&](const runtime::RequestEvent& event) {
      v1::GenerateResponse response;
      for (const auto& delta : event.deltas) append(*response.add_choices(), delta);
      if (event.done) set_usage(response, event.usage);
      return writer->Write(response);  // false: the client is gone
    });
  }

  grpc::Status Tokenize(grpc::ServerContext* context, const v1::TokenizeRequest* request,
                        v1::TokenizeResponse* response) override {
    if (!authorized(*context)) return unauthenticated();
    try {
      for (int32_t id : tokenize(*request, prompts_)) response->add_token_ids(id);
      return grpc::Status::OK;
    } catch (const Error& e) {
      return to_status(e);
    }
  }

  grpc::Status ModelInfo(grpc::ServerContext* context, const v1::ModelInfoRequest*,
                         v1::ModelInfoResponse* response) override {
    if (!authorized(*context)) return unauthenticated();
    const runtime::ModelConfig& config = model_.config();
    response->set_architecture(config.architecture);
    response->set_model_type(config.model_type);
    response->set_dtype(options_.dtype);
    response->set_tp_size(model_.shape().tp_size);
    response->set_context_length(config.max_position_embeddings);
    response->set_vocab_size(config.vocab_size);
    response->set_num_kv_blocks(model_.options().num_kv_blocks);
    response->set_block_size(model_.options().block_size);
    response->set_backend(options_.backend);
    const runtime::SamplingParams& defaults = engine_.sampling_defaults();
    v1::SamplingDefaults* shown = response->mutable_sampling_defaults();
    shown->set_temperature(defaults.temperature);
    shown->set_top_k(defaults.top_k);
    shown->set_top_p(defaults.top_p);
    shown->set_min_p(defaults.min_p);
    shown->set_repetition_penalty(defaults.repetition_penalty);
    shown->set_source(engine_.generation_config_defaults() ? "generation_config.json" : "vLLM");
    for (int32_t id : engine_.eos_token_ids()) response->add_eos_token_ids(id);
    return grpc::Status::OK;
  }

  grpc::Status Stats(grpc::ServerContext* context, const v1::StatsRequest*,
                     v1::StatsResponse* response) override {
    if (!authorized(*context)) return unauthenticated();
    const runtime::EngineStats stats = engine_.stats();
    response->set_requests_in_flight(stats.queued_requests);
    response->set_running_sequences(stats.running_sequences);
    response->set_waiting_sequences(stats.waiting_sequences);
    response->set_kv_blocks_used(stats.kv_blocks_used);
    response->set_kv_blocks_total(stats.kv_blocks_total);
    response->set_prompt_tokens(stats.prompt_tokens);
    response->set_generated_tokens(stats.generated_tokens);
    response->set_steps(stats.steps);
    response->set_preemptions(stats.preemptions);
    response->set_prefix_query_tokens(stats.prefix_query_tokens);
    response->set_prefix_hit_tokens(stats.prefix_hit_tokens);
    response->set_kv_blocks_cached(stats.kv_blocks_cached);
    response->set_draft_tokens(stats.draft_tokens);
    response->set_accepted_draft_tokens(stats.accepted_draft_tokens);
    return grpc::Status::OK;
  }

 private:
  bool authorized(const grpc::ServerContext& context) const {
    if (options_.api_key.empty()) return true;
    const auto& metadata = context.client_metadata();
    auto found = metadata.find("authorization");
    if (found == metadata.end()) return false;
    return rpc::authorized(std::string_view(found->second.data(), found->second.size()),
                           options_.api_key);
  }

  static grpc::Status unauthenticated() {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "a valid API key is required: send metadata 'authorization: Bearer KEY'");
  }

  static void set_usage(v1::GenerateResponse& response, const runtime::Usage& usage) {
    response.mutable_usage()->set_prompt_tokens(usage.prompt_tokens);
    response.mutable_usage()->set_completion_tokens(usage.completion_tokens);
  }

  // Submits the request and feeds its events to `deliver` until it is done. A client that
  // cancels, disconnects or runs out of time makes the engine drop the request within a step.
  template <typename Deliver>
  grpc::Status run(grpc::ServerContext* context, const v1::GenerateRequest& wire, Deliver deliver) {
    std::shared_ptr<runtime::RequestStream> stream;
    try {
      if (wire.ByteSizeLong() > static_cast<size_t>(options_.max_message_bytes)) {
        raise(ErrorCode::kResourceExhausted, "the request is {} bytes, over this server's limit of "
              "{} MiB (raise it with tpserve serve --max-message-mib)", wire.ByteSizeLong(),
              options_.max_message_bytes >> 20);
      }
      runtime::GenerationRequest request;
      request.prompt_ids = prompt_ids(wire, prompts_);
      request.params = sampling_params(wire.sampling(), engine_.sampling_defaults());
      request.priority = wire.priority();
      const auto deadline = context->deadline();
      if (deadline != std::chrono::system_clock::time_point::max()) {
        request.deadline = std::chrono::steady_clock::now() +
                           (deadline - std::chrono::system_clock::now());
      }
      stream = engine_.submit(std::move(request));
    } catch (const Error& e) {
      return to_status(e);
    }
    for (;;) {
      if (context->IsCancelled()) {
        stream->cancel();
        return grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled the request");
      }
      std::optional<runtime::RequestEvent> event = stream->pop(kPollInterval);
      if (!event) continue;
      if (event->error) return to_status(*event->error);
      if (!deliver(*event)) {
        stream->cancel();
        return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
      }
      if (event->done) return grpc::Status::OK;
    }
  }

  runtime::Engine& engine_;
  const runtime::Model& model_;
  PromptContext prompts_;
  ServerOptions options_;
};

namespace {

std::shared_ptr<grpc::ServerCredentials> credentials(const ServerOptions& options) {
  if (options.tls_cert.empty()) return grpc::InsecureServerCredentials();
  check_tls_files(options.tls_cert, options.tls_key);
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({read_pem(options.tls_key, "--tls-key"),
                                    read_pem(options.tls_cert, "--tls-cert")});
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

Server::Server(runtime::Engine& engine, const runtime::Model& model,
               const runtime::Tokenizer* tokenizer, const ServerOptions& options) {
  prompts_.tokenizer = tokenizer;
  if (tokenizer != nullptr) {
    chat_template_ = std::make_unique<runtime::ChatTemplate>(
        runtime::chat_template_for_model(model.config().dir, *tokenizer, options.chat_template_file));
    prompts_.chat_template = chat_template_.get();
  }
  service_ = std::make_unique<GenerationService>(engine, model, prompts_, options);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.host + ":" + std::to_string(options.port),
                           credentials(options), &port_);
  // gRPC sets SO_REUSEPORT by default: a second server on the same port would bind too and take
  // half of the connections. Bind exclusively, so a port in use is an error.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // gRPC itself refuses only requests over twice the limit (with its own words); the handlers
  // refuse those between once and twice with a message that names the flag.
  builder.SetMaxReceiveMessageSize(static_cast<int>(
      std::min<int64_t>(2 * static_cast<int64_t>(options.max_message_bytes), INT32_MAX)));
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    raise(ErrorCode::kUnavailable, "--port {}: cannot listen on {}:{} for gRPC: {}", options.port,
          options.host, options.port, why_cannot_listen(options.host, options.port));
  }
  set_serving(true);
}

Server::~Server() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now());
}

void Server::set_serving(bool serving) {
  server_->GetHealthCheckService()->SetServingStatus(serving);
}

void Server::shutdown(std::chrono::system_clock::time_point deadline) {
  server_->Shutdown(deadline);
}

}  // namespace tpserve::rpc
