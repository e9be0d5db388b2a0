// `tpserve chat --addr HOST:PORT`: an interactive streaming chat client. Each line you type is a
// user turn; the reply streams back as it is generated and joins the history. An empty line or
// end of input quits; "/reset" clears the history. Exit status 1 when the server cannot be reached
// or answers UNAVAILABLE (the chat ends then), or when any turn failed.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>

#include "launch/command.h"
#include "tpserve/v1/generation.grpc.pb.h"

namespace tpserve::launch {

namespace {

struct ChatOptions {
  std::string address = "127.0.0.1:50051";
  std::string system;
  int max_tokens = 256;
  float temperature = 0.7f;
  float top_p = 0.9f;
  double connect_timeout_s = 10;
  std::string api_key;  // --api-key / TPSERVE_API_KEY: sent as "authorization: Bearer KEY"
  std::string tls_ca;   // --tls-ca: PEM roots to trust; set, the channel is TLS
};

// The server answered UNAVAILABLE (it is gone, draining or a rank failed): the chat ends, exit 1.
struct ServerGone {};

// Streams one reply to stdout; returns its text, or nullopt (after printing why) on failure.
std::optional<std::string> stream_reply(v1::Generation::Stub& stub, const v1::ChatMessages& history,
                                        const ChatOptions& options) {
  v1::GenerateRequest request;
  *request.mutable_chat() = history;
  request.mutable_sampling()->set_max_tokens(options.max_tokens);
  request.mutable_sampling()->set_temperature(options.temperature);
  request.mutable_sampling()->set_top_p(options.top_p);
  grpc::ClientContext context;
  if (!options.api_key.empty()) context.AddMetadata("authorization", "Bearer " + options.api_key);
  auto reader = stub.GenerateStream(&context, request);
  std::string reply;
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    for (const auto& choice : response.choices()) {
      std::cout << choice.text() << std::flush;
      reply += choice.text();
    }
  }
  std::cout << "\n";
  const grpc::Status status = reader->Finish();
  if (!status.ok()) {
    std::cerr << "error: " << status.error_message() << " (code " << status.error_code() << ")";
    // gRPC's own size refusal names no flag; the limit is the server's.
    if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
        status.error_message().find("larger than max") != std::string::npos) {
      std::cerr << "; the server's message size limit is set by tpserve serve --max-message-mib";
    }
    std::cerr << "\n";
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE) throw ServerGone{};
    return std::nullopt;
  }
  return reply;
}

int run_chat(const ChatOptions& options) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(-1);  // replies are bounded by the server's own limit
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!options.tls_ca.empty()) {
    grpc::SslCredentialsOptions ssl;
    std::ifstream file(options.tls_ca);
    std::stringstream pem;
    pem << file.rdbuf();
    ssl.pem_root_certs = pem.str();
    credentials = grpc::SslCredentials(ssl);
  }
  auto channel = grpc::CreateCustomChannel(options.address, credentials, arguments);
  const auto connect_deadline = std::chrono::system_clock::now() +
      std::chrono::milliseconds(static_cast<int64_t>(options.connect_timeout_s * 1000));
  if (!channel->WaitForConnected(connect_deadline)) {
    std::cerr << "error: --addr " << options.address << ": cannot connect within "
              << options.connect_timeout_s << " s (is tpserve serve running there?)\n";
    return 1;
  }
  auto stub = v1::Generation::NewStub(channel);
  v1::ChatMessages history;
  auto reset = [&] {
    history.clear_messages();
    if (!options.system.empty()) {
      auto* system = history.add_messages();
      system->set_role("system");
      system->set_content(options.system);
    }
  };
  reset();
  std::cerr << "chatting with " << options.address << " (empty line to quit, /reset to start over)\n";
  bool failed = false;  // any turn that failed makes the exit status 1
  for (std::string line;;) {
    std::cout << "> " << std::flush;
    if (!std::getline(std::cin, line) || line.empty()) return failed ? 1 : 0;
    if (line == "/reset") {
      reset();
      continue;
    }
    auto* user = history.add_messages();
    user->set_role("user");
    user->set_content(line);
    std::optional<std::string> reply;
    try {
      reply = stream_reply(*stub, history, options);
    } catch (const ServerGone&) {
      return 1;  // nothing more can be said to it
    }
    if (!reply) {
      failed = true;
      history.mutable_messages()->RemoveLast();
      continue;
    }
    auto* assistant = history.add_messages();
    assistant->set_role("assistant");
    assistant->set_content(*reply);
  }
}

}  // namespace

void register_chat_command(CLI::App& app, CommandRunner& runner) {
  auto options = std::make_shared<ChatOptions>();
  CLI::App* sub = app.add_subcommand("chat", "Interactive streaming chat with a tpserve server");
  sub->add_option("--addr", options->address, "Server address HOST:PORT");
  sub->add_option("--system", options->system, "System message");
  sub->add_option("--max-tokens", options->max_tokens, "Tokens per reply")->check(CLI::Range(1, 1 << 20));
  sub->add_option("--temperature", options->temperature, "Sampling temperature")->check(CLI::Range(0.0, 100.0));
  sub->add_option("--top-p", options->top_p, "Nucleus sampling")->check(CLI::Range(0.0, 1.0));
  sub->add_option("--api-key", options->api_key, "The server's --api-key")
      ->envname("TPSERVE_API_KEY");
  sub->add_option("--tls-ca", options->tls_ca,
                  "PEM certificate(s) to trust: talk TLS to a server started with --tls-cert")
      ->check(CLI::ExistingFile);
  sub->add_option("--connect-timeout", options->connect_timeout_s,
                  "Seconds to wait for the server before giving up (exit 1)")
      ->check(CLI::Range(0.1, 3600.0));
  sub->callback([options, &runner] { runner = [options] { return run_chat(*options); }; });
}

}  // namespace tpserve::launch
