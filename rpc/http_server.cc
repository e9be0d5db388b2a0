#include "rpc/http_server.h"

#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/log.h"
#include "rpc/api_key.h"
#include "rpc/chat_page.h"
#include "rpc/listen_probe.h"
#include "rpc/openai_job.h"
#include "rpc/tls_files.h"

namespace tpserve::rpc {

namespace {

using nlohmann::json;

constexpr char kJson[] = "application/json";

void send_error(httplib::Response& res, int status, const std::string& message,
                const std::string& param = {}) {
  res.status = status;
  res.set_content(error_body(status, message, param).dump(), kJson);
}

void send_error(httplib::Response& res, const Error& error) {
  const std::string message = http_message(error.what());
  send_error(res, http_status(error.code()), message, field_of_message(message));
}

json parse_body(const httplib::Request& req) {
  try {
    return json::parse(req.body);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
    raise(ErrorCode::kInvalidArgument, "body: not valid JSON: {}", e.what());
  }
}

}  // namespace

class HttpServer::Handlers {
 public:
  Handlers(runtime::Engine& engine, const runtime::Model& model, PromptContext prompts,
           HttpOptions options)
      : engine_(engine), model_(model), prompts_(prompts), options_(std::move(options)) {}

  void install(httplib::Server& http) {
    // Statuses the library sets itself (no route, body over the limit) get OpenAI's error shape;
    // the handlers' own errors already have it.
    http.set_error_handler(httplib::Server::HandlerWithResponse(
        [this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      if (res.status == 413) {
        send_error(res, 413, fmt::format("the request body is over this server's limit of {} MiB "
                                         "(raise it with tpserve serve --max-message-mib)",
                                         options_.max_body_bytes >> 20));
      } else if (res.status == 404) {
        send_error(res, 404, fmt::format("no route {} {}", req.method, req.path));
      } else {
        send_error(res, res.status, fmt::format("HTTP status {}", res.status));
      }
      return httplib::Server::HandlerResponse::Handled;
    }));
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res,
                                  std::exception_ptr exception) {
      try {
        std::rethrow_exception(exception);
      } catch (const Error& e) {
        send_error(res, e);
      } catch (const std::exception& e) {
        send_error(res, 500, e.what());
      }
    });
    // Open without the key: health, and the chat page, which asks for the key and sends it.
    http.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(std::string(chat_page_html()), "text/html; charset=utf-8");
    });
    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      if (engine_.accepting()) {
        res.set_content("{}", kJson);
      } else {
        send_error(res, 503, "the server is shutting down");
      }
    });
    http.Get("/v1/models", keyed([this](const httplib::Request&, httplib::Response& res) {
      json model = {{"id", options_.model_name}, {"object", "model"}, {"created", created_},
                    {"owned_by", "tpserve"},
                    {"max_model_len", model_.config().max_position_embeddings}};
      res.set_content(json{{"object", "list"}, {"data", json::array({model})}}.dump(), kJson);
    }));
    http.Post("/v1/chat/completions", keyed([this](const httplib::Request& req, httplib::Response& res) {
      generate(req, res, true);
    }));
    http.Post("/v1/completions", keyed([this](const httplib::Request& req, httplib::Response& res) {
      generate(req, res, false);
    }));
    http.Post("/tokenize", keyed([this](const httplib::Request& req, httplib::Response& res) {
      tokenize_call(req, res);
    }));
    http.Post("/detokenize", keyed([this](const httplib::Request& req, httplib::Response& res) {
      detokenize_call(req, res);
    }));
  }

 private:
  // The handler behind the API key. (Checked in the handler, not before routing: there the
  // library has not read the body yet, and a kept-alive connection would then read it as the next
  // request.)
  httplib::Server::Handler keyed(httplib::Server::Handler handler) const {
    return [this, handler = std::move(handler)](const httplib::Request& req,
                                                httplib::Response& res) {
      if (!authorized(req.get_header_value("Authorization"), options_.api_key)) {
        send_error(res, 401, "a valid API key is required: send 'Authorization: Bearer KEY'");
        return;
      }
      handler(req, res);
    };
  }

  void generate(const httplib::Request& req, httplib::Response& res, bool chat) {
    const OpenAiRequest parsed = chat ? read_chat_request(parse_body(req))
                                      : read_completion_request(parse_body(req));
    const OpenAiOptions& options = parsed.options;
    if (!options.model.empty() && options.model != options_.model_name) {
      send_error(res, 404, fmt::format("The model '{}' does not exist; this server serves '{}'",
                                       options.model, options_.model_name), "model");
      return;
    }
    std::vector<std::shared_ptr<runtime::RequestStream>> streams;
    std::vector<std::string> prompt_texts;
    int n = 1;
    try {
      for (const v1::GenerateRequest& wire : parsed.prompts) {
        runtime::GenerationRequest request;
        request.prompt_ids = prompt_ids(wire, prompts_);
        request.params = sampling_params(wire.sampling(), engine_.sampling_defaults());
        if (!options.max_tokens_set) {
          request.params.max_tokens = rest_of_context(request.prompt_ids.size());
        }
        n = request.params.n;
        if (options.echo) prompt_texts.push_back(echo_text(wire, request.prompt_ids));
        else prompt_texts.emplace_back();
        streams.push_back(engine_.submit(std::move(request)));
      }
    } catch (const Error&) {
      for (auto& stream : streams) stream->cancel();  // all prompts or none
      throw;
    }
    const std::string id = fmt::format("{}-{}", chat ? "chatcmpl" : "cmpl", streams.front()->id());
    auto job = std::make_shared<OpenAiJob>(
        std::move(streams), std::make_unique<OpenAiResponse>(chat, id, options_.model_name, options,
                                                             prompts_.tokenizer,
                                                             std::move(prompt_texts), n));
    if (!options.stream) {
      std::string body;
      res.status = job->wait_whole(body);
      res.set_content(body, kJson);
      return;
    }
    stream_job(res, std::move(job), options.include_usage);
  }

  // Server-sent events: the opening chunks, one chunk per delta, the usage, then [DONE]. A write
  // that fails (the client went away) ends the provider and the releaser cancels what is left.
  static void stream_job(httplib::Response& res, std::shared_ptr<OpenAiJob> job, bool include_usage) {
    auto opened = std::make_shared<bool>(false);
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [job, opened, include_usage](size_t, httplib::DataSink& sink) {
          auto write = [&sink](const json& chunk) {
            const std::string event = sse_event(chunk);
            return sink.write(event.data(), event.size());
          };
          if (!*opened) {
            *opened = true;
            for (const json& chunk : job->response().opening_chunks()) {
              if (!write(chunk)) return false;
            }
            return true;
          }
          auto next = job->next(std::chrono::milliseconds(50));
          if (next) {
            if (next->event.error) {
              const Error& error = *next->event.error;
              const json body = error_body(http_status(error.code()), http_message(error.what()));
              if (!write(body)) return false;
              job->cancel();
            } else {
              for (const json& chunk : job->response().add(next->prompt, next->event)) {
                if (!write(chunk)) return false;
              }
            }
          }
          if (job->finished() || (next && next->event.error)) {
            if (include_usage && !(next && next->event.error) &&
                !write(job->response().usage_chunk())) {
              return false;
            }
            constexpr std::string_view kDone = "data: [DONE]\n\n";
            if (!sink.write(kDone.data(), kDone.size())) return false;
            sink.done();
          }
          return true;
        },
        [job](bool) { job->cancel(); });
  }

  // OpenAI's chat default: up to the end of the context. Admission reserves KV blocks for
  // prompt + max_tokens, so the default is capped at what the KV cache could ever hold, else the
  // request would be refused rather than served.
  int32_t rest_of_context(size_t prompt_tokens) const {
    const int64_t context = model_.config().max_position_embeddings;
    const int64_t capacity = static_cast<int64_t>(model_.options().num_kv_blocks) *
                             model_.options().block_size;
    const int64_t rest = std::min(context, capacity) - static_cast<int64_t>(prompt_tokens);
    // Nothing left: 1, which the engine refuses naming the prompt and the context.
    return static_cast<int32_t>(std::clamp<int64_t>(rest, 1, INT32_MAX));
  }

  std::string echo_text(const v1::GenerateRequest& wire, const std::vector<int32_t>& ids) const {
    if (wire.has_text()) return wire.text();
    if (prompts_.tokenizer == nullptr) return {};
    // Ids past the tokenizer's vocabulary (a padded embedding) have no text.
    std::vector<int32_t> known;
    for (int32_t id : ids) {
      if (id < prompts_.tokenizer->vocab_size()) known.push_back(id);
    }
    return prompts_.tokenizer->decode(known);
  }

  // vLLM's /tokenize: {"prompt": text} or {"messages": [...]}, add_special_tokens (default true).
  void tokenize_call(const httplib::Request& req, httplib::Response& res) {
    const json body = parse_body(req);
    if (!body.is_object()) raise(ErrorCode::kInvalidArgument, "body: expected a JSON object");
    v1::TokenizeRequest wire;
    if (body.contains("messages")) {
      const OpenAiRequest chat = read_chat_request({{"messages", body["messages"]}});
      *wire.mutable_chat() = chat.prompts.front().chat();
    } else if (auto prompt = body.find("prompt"); prompt != body.end() && prompt->is_string()) {
      wire.set_text(prompt->get<std::string>());
      wire.set_add_special_tokens(body.value("add_special_tokens", true));
    } else {
      raise(ErrorCode::kInvalidArgument, "prompt: expected a string (or send messages)");
    }
    const std::vector<int32_t> ids = tokenize(wire, prompts_);
    res.set_content(json{{"count", ids.size()}, {"max_model_len",
                                                   model_.config().max_position_embeddings},
                         {"tokens", ids}}.dump(), kJson);
  }

  // vLLM's /detokenize: {"tokens": [ids]} -> {"prompt": text}.
  void detokenize_call(const httplib::Request& req, httplib::Response& res) {
    const json body = parse_body(req);
    if (prompts_.tokenizer == nullptr) {
      raise(ErrorCode::kInvalidArgument, "tokens: this model directory has no tokenizer");
    }
    auto tokens = body.is_object() ? body.find("tokens") : body.end();
    if (!body.is_object() || tokens == body.end() || !tokens->is_array()) {
      raise(ErrorCode::kInvalidArgument, "tokens: expected a list of token ids");
    }
    std::vector<int32_t> ids;
    for (size_t i = 0; i < tokens->size(); ++i) {
      const json& id = (*tokens)[i];
      if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
          id.get<int64_t>() >= prompts_.tokenizer->vocab_size()) {
        raise(ErrorCode::kInvalidArgument, "tokens[{}]: {} is not a token id of this vocabulary "
              "[0, {})", i, id.dump(), prompts_.tokenizer->vocab_size());
      }
      ids.push_back(id.get<int32_t>());
    }
    res.set_content(json{{"prompt", prompts_.tokenizer->decode(ids)}}.dump(
                        -1, ' ', false, json::error_handler_t::replace), kJson);
  }

  runtime::Engine& engine_;
  const runtime::Model& model_;
  PromptContext prompts_;
  HttpOptions options_;
  const int64_t created_ = std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::system_clock::now().time_since_epoch()).count();
};

namespace {

std::unique_ptr<httplib::Server> make_server(const HttpOptions& options) {
  if (options.tls_cert.empty()) return std::make_unique<httplib::Server>();
  check_tls_files(options.tls_cert, options.tls_key);
  return std::make_unique<httplib::SSLServer>(options.tls_cert.c_str(), options.tls_key.c_str());
}

}  // namespace

HttpServer::HttpServer(runtime::Engine& engine, const runtime::Model& model, PromptContext prompts,
                       HttpOptions options)
    : handlers_(std::make_unique<Handlers>(engine, model, prompts, options)),
      http_(make_server(options)) {
  handlers_->install(*http_);
  http_->set_payload_max_length(options.max_body_bytes);
  const size_t threads = static_cast<size_t>(options.threads);
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // cpp-httplib sets SO_REUSEPORT by default, which lets a second server share a port in use; and
  // its listen backlog of 5 makes a burst of new connections (hundreds of clients at once) wait
  // out SYN retries. Keep the socket to raise the backlog once it listens.
  auto listening_fd = std::make_shared<int>(-1);
  // TCP_NODELAY (which accepted sockets inherit on Linux): a streamed chunk goes out in several
  // small writes, which Nagle's algorithm would hold back until the previous one is acknowledged.
  http_->set_socket_options([listening_fd](int fd) {
    const int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
    *listening_fd = fd;
  });
  port_ = options.port == 0 ? http_->bind_to_any_port(options.host)
                            : (http_->bind_to_port(options.host, options.port) ? options.port : -1);
  if (port_ <= 0) {
    raise(ErrorCode::kUnavailable, "--http-port {}: cannot listen on {}:{} for HTTP: {}",
          options.port, options.host, options.port, why_cannot_listen(options.host, options.port));
  }
  // Linux takes a second listen() on a listening socket as a new backlog.
  if (*listening_fd >= 0) ::listen(*listening_fd, SOMAXCONN);
  thread_ = std::thread([this] { http_->listen_after_bind(); });
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::stop() {
  http_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace tpserve::rpc
