// Access control on the gRPC front end: with --api-key every Generation call needs
// "authorization: Bearer KEY" metadata (UNAUTHENTICATED otherwise) while health stays open, and
// with --tls-cert/--tls-key the server speaks only TLS. (HTTP's side, 401 and HTTPS, is checked
// with the openai client in openai_client_e2e.py.)
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/rpc/server_process.h"
#include "tpserve/v1/generation.grpc.pb.h"

namespace tpserve {
namespace {

namespace v1 = tpserve::v1;

const std::string kModel = std::string(TPSERVE_FIXTURES_DIR) + "/qwen2_tied";

std::string read_file(const std::filesystem::path& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// A self-signed certificate for 127.0.0.1, made by openssl for this test.
struct SelfSigned {
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("tpserve_tls_" + std::to_string(getpid()));
  std::string cert = (dir / "cert.pem").string();
  std::string key = (dir / "key.pem").string();
  SelfSigned() {
    std::filesystem::create_directories(dir);
    const std::string command =
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -addext "
        "subjectAltName=IP:127.0.0.1,DNS:localhost -keyout " + key + " -out " + cert +
        " >/dev/null 2>&1";
    if (std::system(command.c_str()) != 0) throw std::runtime_error("openssl failed");
  }
  ~SelfSigned() { std::filesystem::remove_all(dir); }
};

grpc::Status model_info(grpc::Channel& channel, const std::string& authorization) {
  auto stub = v1::Generation::NewStub(std::shared_ptr<grpc::Channel>(&channel, [](auto*) {}));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  if (!authorization.empty()) context.AddMetadata("authorization", authorization);
  v1::ModelInfoResponse response;
  return stub->ModelInfo(&context, v1::ModelInfoRequest(), &response);
}

grpc::Status generate(grpc::Channel& channel, const std::string& authorization) {
  auto stub = v1::Generation::NewStub(std::shared_ptr<grpc::Channel>(&channel, [](auto*) {}));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  if (!authorization.empty()) context.AddMetadata("authorization", authorization);
  v1::GenerateRequest request;
  request.mutable_token_ids()->add_ids(1);
  request.mutable_sampling()->set_max_tokens(2);
  v1::GenerateResponse response;
  return stub->Generate(&context, request, &response);
}

grpc::health::v1::HealthCheckResponse::ServingStatus health(grpc::Channel& channel) {
  auto stub = grpc::health::v1::Health::NewStub(
      std::shared_ptr<grpc::Channel>(&channel, [](auto*) {}));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  grpc::health::v1::HealthCheckResponse response;
  if (!stub->Check(&context, {}, &response).ok()) return response.UNKNOWN;
  return response.status();
}

TEST(AccessControl, ApiKeyOverTlsOnGrpc) {
  SelfSigned tls;
  testing::ServerProcess server(1, {"--model", kModel, "--api-key", "s3cret", "--tls-cert",
                                    tls.cert, "--tls-key", tls.key});
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = read_file(tls.cert);
  auto secure = grpc::CreateChannel(server.address(), grpc::SslCredentials(ssl));

  EXPECT_TRUE(model_info(*secure, "Bearer s3cret").ok());
  EXPECT_TRUE(generate(*secure, "Bearer s3cret").ok());
  for (const std::string& wrong : {std::string(), std::string("Bearer nope"),
                                   std::string("s3cret")}) {
    const grpc::Status info = model_info(*secure, wrong);
    EXPECT_EQ(info.error_code(), grpc::StatusCode::UNAUTHENTICATED) << "'" << wrong << "'";
    EXPECT_NE(info.error_message().find("authorization: Bearer KEY"), std::string::npos);
    EXPECT_EQ(generate(*secure, wrong).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  // Health stays open, so load balancers need no key.
  EXPECT_EQ(health(*secure), grpc::health::v1::HealthCheckResponse::SERVING);
  // tpserve chat with the key and the certificate; and without the key.
  auto chat = [&](const std::string& flags) {
    const std::string command = std::string("printf 'Hi\\n\\n' | ") + TPSERVE_BIN + " chat --addr " +
                                server.address() + " --max-tokens 2 --tls-ca " + tls.cert + " " +
                                flags + " 2>&1";
    FILE* pipe = popen(command.c_str(), "r");
    std::string output;
    char buffer[256];
    while (pipe != nullptr && fgets(buffer, sizeof(buffer), pipe) != nullptr) output += buffer;
    return std::pair{pipe == nullptr ? -1 : WEXITSTATUS(pclose(pipe)), output};
  };
  auto [keyed_status, keyed_output] = chat("--api-key s3cret");
  EXPECT_EQ(keyed_status, 0) << keyed_output;
  auto [bare_status, bare_output] = chat("");
  EXPECT_EQ(bare_status, 1) << bare_output;
  EXPECT_NE(bare_output.find("API key is required"), std::string::npos) << bare_output;
  // A plaintext client cannot talk to a TLS server.
  auto plain = grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials());
  EXPECT_EQ(model_info(*plain, "Bearer s3cret").error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST(AccessControl, NonLoopbackWithoutKeyWarns) {
  testing::ServerProcess server(1, {"--model", kModel, "--host", "0.0.0.0"}, {},
                                {.capture_stderr = true});
  EXPECT_NE(server.stderr_text().find("no --api-key is set"), std::string::npos)
      << server.stderr_text();
}

}  // namespace
}  // namespace tpserve
