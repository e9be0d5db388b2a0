// `tpserve serve` under mpirun -np 2 on the qwen2_tied fixture, driven over gRPC: greedy outputs
// equal transformers' (alone and 64 at once, streaming), seeded sampling reproduces, cancelling
// frees the KV blocks, every validation case answers with the right status naming the field,
// queue overflow and SIGTERM drain. Peer failures, mpirun's signals and the limits' messages:
// serve_lifecycle_e2etest.cc.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <cmath>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <thread>

#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/rpc/grpc_client.h"
#include "tests/rpc/server_process.h"
#include "tpserve/v1/generation.grpc.pb.h"

namespace tpserve {
namespace {

using grpc::StatusCode;
using testing::Client;
using testing::HealthStatus;
namespace v1 = tpserve::v1;

const std::string kModel = std::string(TPSERVE_FIXTURES_DIR) + "/qwen2_tied";

struct GreedyCase {
  std::vector<int32_t> prompt;
  std::vector<int32_t> greedy;
};

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');) ids.push_back(std::stoi(item));
  return ids;
}

std::vector<GreedyCase> greedy_cases() {
  std::ifstream file(kModel + "/reference_greedy.txt");
  std::vector<GreedyCase> cases;
  for (std::string prompt, greedy; file >> prompt >> greedy;) {
    cases.push_back({parse_ids(prompt), parse_ids(greedy)});
  }
  return cases;
}

class ServeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new testing::ServerProcess(2, {"--model", kModel, "--max-seqs", "16", "--block-size",
                                             "4", "--max-queued", "128", "--metrics-port", "0"});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static testing::ServerProcess* server_;
};

testing::ServerProcess* ServeTest::server_ = nullptr;

TEST_F(ServeTest, HealthAndModelInfo) {
  Client client(server_->address());
  EXPECT_EQ(client.health(), HealthStatus::SERVING);
  grpc::ClientContext context;
  v1::ModelInfoResponse info;
  ASSERT_TRUE(client.stub().ModelInfo(&context, v1::ModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.architecture(), "Qwen2ForCausalLM");
  EXPECT_EQ(info.tp_size(), 2);
  EXPECT_EQ(info.vocab_size(), 512);
  EXPECT_EQ(info.context_length(), 256);
  EXPECT_EQ(info.backend(), "cpu");
}

TEST_F(ServeTest, GreedyUnaryMatchesTransformers) {
  Client client(server_->address());
  for (const GreedyCase& c : greedy_cases()) {
    v1::GenerateResponse response;
    ASSERT_TRUE(client.generate(Client::greedy(c.prompt, 16), &response).ok());
    ASSERT_EQ(response.choices_size(), 1);
    const auto& ids = response.choices(0).token_ids();
    EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.end()), c.greedy);
    EXPECT_EQ(response.choices(0).finish_reason(), "length");
    EXPECT_EQ(response.usage().prompt_tokens(), static_cast<int64_t>(c.prompt.size()));
    EXPECT_EQ(response.usage().completion_tokens(), 16);
  }
}

TEST_F(ServeTest, SixtyFourConcurrentStreamsMatchEachRunAlone) {
  const std::vector<GreedyCase> cases = greedy_cases();
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0}, failures{0};
  for (int i = 0; i < 64; ++i) {
    threads.emplace_back([&, i] {
      Client client(server_->address());
      const GreedyCase& c = cases[static_cast<size_t>(i) % cases.size()];
      auto [ids, status] = client.stream(Client::greedy(c.prompt, 16));
      if (!status.ok()) ++failures;
      if (ids != c.greedy) ++mismatches;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
}

TEST_F(ServeTest, SeededSamplingReproducesWhateverSharesTheBatch) {
  Client client(server_->address());
  auto sampled = [&](uint64_t seed) {
    v1::GenerateRequest request = Client::greedy({1, 17, 300}, 24);
    request.mutable_sampling()->set_temperature(1.0f);
    request.mutable_sampling()->set_top_p(0.95f);
    request.mutable_sampling()->set_seed(seed);
    return client.stream(request).first;
  };
  const std::vector<int32_t> alone = sampled(7);
  ASSERT_EQ(alone.size(), 24u);
  // Again, with unrelated traffic in the same batches.
  std::vector<std::thread> noise;
  for (int i = 0; i < 6; ++i) {
    noise.emplace_back([&] {
      Client other(server_->address());
      v1::GenerateRequest request = Client::greedy({5, 6, 7, 8}, 30);
      request.mutable_sampling()->set_temperature(1.0f);
      other.stream(request);
    });
  }
  EXPECT_EQ(sampled(7), alone);
  for (std::thread& t : noise) t.join();
  EXPECT_NE(sampled(8), alone);
}

TEST(ServeLifecycle, CancellingMidStreamFreesTheKvBlocks) {
  // Rank 1 takes 5 ms longer per step, so the 200-token request is still running (about 1 s)
  // when we look at the KV usage, however fast the machine.
  testing::ServerProcess server(2, {"--model", kModel, "--block-size", "4"},
                                {"TPSERVE_FAULT_STEP_DELAY_MS=5"});
  Client client(server.address());
  {
    grpc::ClientContext context;
    auto reader = client.stub().GenerateStream(&context, Client::greedy({1, 2, 3}, 200));
    v1::GenerateResponse response;
    ASSERT_TRUE(reader->Read(&response));
    EXPECT_GT(client.stats().kv_blocks_used(), 0);
    context.TryCancel();
    while (reader->Read(&response)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), StatusCode::CANCELLED);
  }
  client.await_stats([](const v1::StatsResponse& s) { return s.kv_blocks_used() == 0; },
                     std::chrono::seconds(10));
  EXPECT_EQ(client.stats().kv_blocks_used(), 0);
  EXPECT_EQ(client.stats().running_sequences(), 0);
}

// Each invalid request: the status code, and a message naming the field.
TEST_F(ServeTest, ValidationNamesTheField) {
  Client client(server_->address());
  struct Case {
    std::string name;
    std::function<void(v1::GenerateRequest&)> edit;
    StatusCode code;
    std::string fragment;
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<Case> cases = {
      {"no prompt", [](auto& r) { r.clear_token_ids(); }, StatusCode::INVALID_ARGUMENT, "prompt"},
      {"empty text", [](auto& r) { r.set_text(""); }, StatusCode::INVALID_ARGUMENT, "prompt.text"},
      {"invalid UTF-8", [](auto& r) { r.set_text("ok\xff"); }, StatusCode::INVALID_ARGUMENT,
       "byte offset 2"},
      {"empty ids", [](auto& r) { r.mutable_token_ids()->clear_ids(); },
       StatusCode::INVALID_ARGUMENT, "prompt.token_ids"},
      {"id outside vocab", [](auto& r) { r.mutable_token_ids()->add_ids(512); },
       StatusCode::OUT_OF_RANGE, "token 512"},
      {"beyond context", [](auto& r) { r.mutable_sampling()->set_max_tokens(300); },
       StatusCode::OUT_OF_RANGE, "300"},
      {"temperature < 0", [](auto& r) { r.mutable_sampling()->set_temperature(-1); },
       StatusCode::INVALID_ARGUMENT, "temperature"},
      {"temperature NaN", [&](auto& r) { r.mutable_sampling()->set_temperature(nan); },
       StatusCode::INVALID_ARGUMENT, "temperature"},
      {"temperature inf", [&](auto& r) { r.mutable_sampling()->set_temperature(inf); },
       StatusCode::INVALID_ARGUMENT, "temperature"},
      {"top_p 0", [](auto& r) { r.mutable_sampling()->set_top_p(0); },
       StatusCode::INVALID_ARGUMENT, "top_p"},
      {"top_p > 1", [](auto& r) { r.mutable_sampling()->set_top_p(1.5f); },
       StatusCode::INVALID_ARGUMENT, "top_p"},
      {"top_k < 0", [](auto& r) { r.mutable_sampling()->set_top_k(-1); },
       StatusCode::INVALID_ARGUMENT, "top_k"},
      {"min_p > 1", [](auto& r) { r.mutable_sampling()->set_min_p(2); },
       StatusCode::INVALID_ARGUMENT, "min_p"},
      {"n 0", [](auto& r) { r.mutable_sampling()->set_n(0); }, StatusCode::INVALID_ARGUMENT, "n"},
      {"n too large", [](auto& r) { r.mutable_sampling()->set_n(1000); },
       StatusCode::OUT_OF_RANGE, "n"},
      {"empty stop", [](auto& r) { r.mutable_sampling()->add_stop(""); },
       StatusCode::INVALID_ARGUMENT, "stop"},
      {"too many stops",
       [](auto& r) {
         for (int i = 0; i < 100; ++i) r.mutable_sampling()->add_stop("s" + std::to_string(i));
       },
       StatusCode::OUT_OF_RANGE, "stop"},
      {"bad chat role",
       [](auto& r) {
         auto* m = r.mutable_chat()->add_messages();
         m->set_role("robot");
         m->set_content("hi");
       },
       StatusCode::INVALID_ARGUMENT, "prompt.chat.messages[0].role"},
  };
  for (const Case& c : cases) {
    v1::GenerateRequest request = Client::greedy({1, 2, 3}, 8);
    c.edit(request);
    v1::GenerateResponse response;
    const grpc::Status status = client.generate(request, &response);
    EXPECT_EQ(status.error_code(), c.code) << c.name << ": " << status.error_message();
    EXPECT_NE(status.error_message().find(c.fragment), std::string::npos)
        << c.name << ": " << status.error_message();
  }
  // Larger than the 4 MiB message limit.
  v1::GenerateRequest huge = Client::greedy({1}, 4);
  huge.set_text(std::string(5 << 20, 'a'));
  v1::GenerateResponse response;
  EXPECT_EQ(client.generate(huge, &response).error_code(), StatusCode::RESOURCE_EXHAUSTED);
  // The server still works after all that.
  EXPECT_TRUE(client.generate(Client::greedy({1, 2, 3}, 2), &response).ok());
}

TEST_F(ServeTest, TextAndChatPromptsAndStopStrings) {
  Client client(server_->address());
  grpc::ClientContext context;
  v1::TokenizeRequest tokenize;
  tokenize.set_text("Hello, world");
  tokenize.set_add_special_tokens(true);
  v1::TokenizeResponse ids;
  ASSERT_TRUE(client.stub().Tokenize(&context, tokenize, &ids).ok());
  ASSERT_GT(ids.token_ids_size(), 0);
  v1::GenerateRequest by_text = Client::greedy({}, 8);
  by_text.set_text("Hello, world");
  v1::GenerateResponse a, b;
  ASSERT_TRUE(client.generate(by_text, &a).ok());
  ASSERT_TRUE(client.generate(Client::greedy({ids.token_ids().begin(), ids.token_ids().end()}, 8), &b).ok());
  EXPECT_EQ(a.choices(0).token_ids_size(), 8);
  EXPECT_EQ(a.choices(0).text(), b.choices(0).text());
  // A stop string taken from the unconstrained output cuts the text before it. Whole characters
  // only: stop strings must be valid UTF-8, and this random model's text has multi-byte ones.
  const std::string text = a.choices(0).text();
  const auto continuation = [&](size_t pos) { return pos < text.size() && (text[pos] & 0xC0) == 0x80; };
  size_t begin = 2;
  while (continuation(begin)) ++begin;
  size_t end = begin + 1;
  while (continuation(end)) ++end;
  if (end <= text.size()) {
    const std::string stop = text.substr(begin, end - begin);
    v1::GenerateRequest stopped = by_text;
    stopped.mutable_sampling()->add_stop(stop);
    v1::GenerateResponse c;
    ASSERT_TRUE(client.generate(stopped, &c).ok());
    EXPECT_EQ(c.choices(0).finish_reason(), "stop");
    EXPECT_EQ(c.choices(0).text(), text.substr(0, text.find(stop)));
  }
  v1::GenerateRequest chat = Client::greedy({}, 4);
  auto* message = chat.mutable_chat()->add_messages();
  message->set_role("user");
  message->set_content("Hi there");
  v1::GenerateResponse d;
  EXPECT_TRUE(client.generate(chat, &d).ok());
}

// A prompt seen before reuses its whole blocks (block size 4: 8 of these 10 tokens) and answers
// the same; Stats counts the hit. A request's priority is accepted and changes nothing else.
TEST_F(ServeTest, PrefixCacheHitsAreCountedAndAnswerTheSame) {
  Client client(server_->address());
  const std::vector<int32_t> prompt = {400, 401, 402, 403, 404, 405, 406, 407, 408, 409};
  v1::GenerateResponse first;
  ASSERT_TRUE(client.generate(Client::greedy(prompt, 8), &first).ok());
  const v1::StatsResponse before = client.stats();
  EXPECT_GT(before.kv_blocks_cached(), 0);
  v1::GenerateRequest again = Client::greedy(prompt, 8);
  again.set_priority(3);
  v1::GenerateResponse second;
  ASSERT_TRUE(client.generate(again, &second).ok());
  const v1::StatsResponse after = client.stats();
  EXPECT_EQ(after.prefix_hit_tokens() - before.prefix_hit_tokens(), 8);
  EXPECT_EQ(after.prefix_query_tokens() - before.prefix_query_tokens(), 10);
  EXPECT_EQ(after.preemptions(), 0);
  EXPECT_EQ(std::vector<int32_t>(second.choices(0).token_ids().begin(), second.choices(0).token_ids().end()),
            std::vector<int32_t>(first.choices(0).token_ids().begin(), first.choices(0).token_ids().end()));
}

TEST_F(ServeTest, PrometheusMetrics) {
  Client client(server_->address());
  v1::GenerateResponse response;
  ASSERT_TRUE(client.generate(Client::greedy({1, 2, 3}, 4), &response).ok());
  ASSERT_GT(server_->metrics_port(), 0);
  httplib::Client http("127.0.0.1", server_->metrics_port());
  auto result = http.Get("/metrics");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  const std::string& body = result->body;
  for (const char* name :
       {"tpserve_sequences_waiting ", "tpserve_sequences_running ", "tpserve_kv_blocks_used ",
        "tpserve_kv_blocks_free ", "tpserve_prompt_tokens_total ", "tpserve_generated_tokens_total ",
        "tpserve_time_to_first_token_seconds_bucket{le=\"+Inf\"} ",
        "tpserve_inter_token_latency_seconds_count ", "tpserve_preemptions_total ",
        "tpserve_prefix_cache_queries_total ", "tpserve_prefix_cache_hits_total ",
        "tpserve_kv_blocks_cached "}) {
    EXPECT_NE(body.find(name), std::string::npos) << name << " missing from\n" << body;
  }
  EXPECT_EQ(body.find("tpserve_generated_tokens_total 0\n"), std::string::npos);
}

TEST(ServeChatClient, StreamsARepliedTurn) {
  testing::ServerProcess server(2, {"--model", kModel});
  const std::string command = std::string("printf 'Hello there\\n\\n' | ") + TPSERVE_BIN +
                              " chat --addr " + server.address() + " --max-tokens 8 --temperature 0";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buffer[256];
  while (fgets(buffer, sizeof(buffer), pipe) != nullptr) output += buffer;
  EXPECT_EQ(pclose(pipe), 0);
  EXPECT_NE(output.find("> "), std::string::npos) << output;
  EXPECT_GT(output.size(), 4u) << output;
}

TEST(ServeLifecycle, QueueOverflowIsResourceExhausted) {
  // 10 ms more per step on rank 1: each 200-token request holds the one slot for at least 2 s.
  // Two requests fill the queue (one running, one waiting); the next ones, sent once Stats shows
  // both admitted, are refused, and the two finish.
  testing::ServerProcess server(2, {"--model", kModel, "--max-queued", "2", "--max-seqs", "1"},
                                {"TPSERVE_FAULT_STEP_DELAY_MS=10"});
  Client client(server.address());
  std::vector<std::thread> admitted;
  std::vector<grpc::Status> admitted_status(2);
  for (int i = 0; i < 2; ++i) {
    admitted.emplace_back([&, i] {
      Client own(server.address());
      v1::GenerateResponse response;
      admitted_status[i] = own.generate(Client::greedy({1, 2, 3}, 200), &response, std::chrono::seconds(120));
    });
    const auto admitted_so_far = [&](const v1::StatsResponse& s) { return s.requests_in_flight() == i + 1; };
    EXPECT_TRUE(client.await_stats(admitted_so_far, std::chrono::seconds(20)))
        << "request " << i << " was not admitted";
  }
  for (int i = 0; i < 3; ++i) {
    v1::GenerateResponse response;
    const grpc::Status status = client.generate(Client::greedy({1, 2, 3}, 4), &response);
    EXPECT_EQ(status.error_code(), StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
    EXPECT_NE(status.error_message().find("queue is full"), std::string::npos) << status.error_message();
  }
  EXPECT_EQ(client.stats().requests_in_flight(), 2);
  for (std::thread& t : admitted) t.join();
  for (const grpc::Status& status : admitted_status) EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST(ServeLifecycle, SigtermDrainsInFlightRequestsAndEveryRankExitsZero) {
  // Rank 1 takes 10 ms longer per step: the request below stays in flight for seconds on any
  // machine.
  testing::ServerProcess server(2, {"--model", kModel, "--drain-timeout", "120"},
                                {"TPSERVE_FAULT_STEP_DELAY_MS=10"});
  Client client(server.address());
  grpc::Status in_flight;
  v1::GenerateResponse response;
  // 16 sequences of 250 tokens: 250 steps, at least 2.5 s.
  v1::GenerateRequest long_request = Client::greedy({1, 2, 3}, 250);
  long_request.mutable_sampling()->set_n(16);
  std::thread request(
      [&] { in_flight = client.generate(long_request, &response, std::chrono::seconds(120)); });
  const auto running = [](const v1::StatsResponse& s) { return s.running_sequences() > 0; };
  EXPECT_TRUE(client.await_stats(running, std::chrono::seconds(60))) << "the request never ran";
  // As a scheduler stopping the job would: SIGTERM to the ranks (rank 0 drains; the others follow).
  ASSERT_GT(server.rank0_pid(), 0);
  kill(server.rank0_pid(), SIGTERM);
  EXPECT_EQ(client.await_health(HealthStatus::NOT_SERVING, std::chrono::seconds(10)),
            HealthStatus::NOT_SERVING);
  v1::GenerateResponse refused;
  EXPECT_EQ(client.generate(Client::greedy({1, 2}, 2), &refused).error_code(), StatusCode::UNAVAILABLE);
  request.join();
  EXPECT_TRUE(in_flight.ok()) << in_flight.error_message();
  ASSERT_EQ(response.choices_size(), 16);
  for (const auto& choice : response.choices()) {
    EXPECT_EQ(choice.token_ids_size(), 250);
    EXPECT_EQ(choice.finish_reason(), "length");
  }
  EXPECT_EQ(server.wait(std::chrono::seconds(30)), std::optional<int>(0));
}

}  // namespace
}  // namespace tpserve
