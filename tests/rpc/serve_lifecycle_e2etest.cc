// `tpserve serve` under mpirun -np 2 when things go wrong around it: a rank killed or hung mid
// request (rank 0 names it; clients get UNAVAILABLE with that reason), SIGTERM to the job through
// launch/mpirun.sh (drains like SIGTERM to rank 0), a request over --max-message-mib (the error
// names the flag), and Stats read right after a response (already without it).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/rpc/grpc_client.h"
#include "tests/rpc/server_process.h"

namespace tpserve {
namespace {

using grpc::StatusCode;
using testing::Client;
using testing::HealthStatus;
using testing::ServerLaunch;
using testing::ServerProcess;
namespace v1 = tpserve::v1;

const std::string kModel = std::string(TPSERVE_FIXTURES_DIR) + "/qwen2_tied";

ServerLaunch capturing_stderr() {
  ServerLaunch launch;
  launch.capture_stderr = true;
  return launch;
}

// The line of `text` that contains `needle`, or "" (for messages that show what was found).
std::string line_with(const std::string& text, const std::string& needle) {
  const auto at = text.find(needle);
  if (at == std::string::npos) return "";
  const auto begin = text.rfind('\n', at);
  const auto end = text.find('\n', at);
  return text.substr(begin == std::string::npos ? 0 : begin + 1, end == std::string::npos ? end : end - begin - 1);
}

// Rank 1 is SIGKILLed (fault injection) after 20 steps of a 200-token request.
TEST(ServeLifecycle, AKilledRankIsNamedToTheClientAndInRankZerosLog) {
  ServerProcess server(2, {"--model", kModel, "--step-timeout", "20"},
                       {"TPSERVE_FAULT_EXIT_RANK=1", "TPSERVE_FAULT_EXIT_AFTER_STEPS=20"},
                       capturing_stderr());
  Client client(server.address());
  v1::GenerateResponse response;
  const auto start = std::chrono::steady_clock::now();
  const grpc::Status status = client.generate(Client::greedy({1, 2, 3}, 200), &response);
  EXPECT_EQ(status.error_code(), StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_NE(status.error_message().find("rank 1 (pid"), std::string::npos) << status.error_message();
  EXPECT_NE(status.error_message().find("has exited"), std::string::npos) << status.error_message();
  // Within a fraction of the step timeout: the dead process is seen, not waited out.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  const auto exit_status = server.wait(std::chrono::seconds(30));
  ASSERT_TRUE(exit_status.has_value()) << "the job did not end";
  EXPECT_NE(*exit_status, 0);
  const std::string log = server.stderr_text();
  EXPECT_NE(line_with(log, "ending the job: rank 1 (pid").find("has exited"), std::string::npos) << log;
}

// Rank 1 stops answering (fault injection) after 20 steps; the step timeout is 3 s.
TEST(ServeLifecycle, AHungRankIsNamedToTheClientAfterTheStepTimeout) {
  ServerProcess server(2, {"--model", kModel, "--step-timeout", "3"},
                       {"TPSERVE_FAULT_EXIT_RANK=1", "TPSERVE_FAULT_EXIT_AFTER_STEPS=20",
                        "TPSERVE_FAULT_HANG=1"},
                       capturing_stderr());
  Client client(server.address());
  v1::GenerateResponse response;
  grpc::Status status;
  std::thread request([&] { status = client.generate(Client::greedy({1, 2, 3}, 200), &response); });
  // A second client arriving while the step hangs is answered the same way. Rank 0 completes 20
  // steps and waits in the 21st: only then is the second request sent (sent earlier, on a slow
  // machine, it could finish before the hang).
  EXPECT_TRUE(client.await_stats([](const v1::StatsResponse& s) { return s.steps() >= 20; },
                                 std::chrono::seconds(20)));
  v1::GenerateResponse late_response;
  const grpc::Status late = client.generate(Client::greedy({4, 5}, 4), &late_response);
  request.join();
  for (const grpc::Status& s : {status, late}) {
    EXPECT_EQ(s.error_code(), StatusCode::UNAVAILABLE) << s.error_message();
    EXPECT_NE(s.error_message().find("rank 1 (pid"), std::string::npos) << s.error_message();
    EXPECT_NE(s.error_message().find("stopped answering"), std::string::npos) << s.error_message();
  }
  const auto exit_status = server.wait(std::chrono::seconds(30));
  ASSERT_TRUE(exit_status.has_value()) << "the job did not end";
  EXPECT_EQ(*exit_status, 75);
  EXPECT_NE(server.stderr_text().find("ending the job: rank 1 (pid"), std::string::npos)
      << server.stderr_text();
}

// What Ctrl-C or `kill` of the job does: SIGTERM to launch/mpirun.sh.
TEST(ServeLifecycle, SigtermToMpirunShDrainsInFlightRequestsAndExitsZero) {
  ServerLaunch launch;
  launch.launcher = std::string("bash ") + TPSERVE_MPIRUN_SH;
  // Rank 1 takes 10 ms longer per step: the request below stays in flight for seconds.
  ServerProcess server(2, {"--model", kModel, "--drain-timeout", "120"},
                       {"TPSERVE_FAULT_STEP_DELAY_MS=10"}, launch);
  Client client(server.address());
  grpc::Status in_flight;
  v1::GenerateResponse response;
  v1::GenerateRequest long_request = Client::greedy({1, 2, 3}, 250);
  long_request.mutable_sampling()->set_n(4);
  std::thread request(
      [&] { in_flight = client.generate(long_request, &response, std::chrono::seconds(120)); });
  const auto running = [](const v1::StatsResponse& s) { return s.running_sequences() > 0; };
  EXPECT_TRUE(client.await_stats(running, std::chrono::seconds(60))) << "the request never ran";
  server.signal(SIGTERM);  // the script's pid: what `kill` of the job sends
  // The request takes 250 steps of at least 10 ms: it is still in flight when this holds.
  EXPECT_EQ(client.await_health(HealthStatus::NOT_SERVING, std::chrono::seconds(10)),
            HealthStatus::NOT_SERVING);
  request.join();
  EXPECT_TRUE(in_flight.ok()) << in_flight.error_message();
  ASSERT_EQ(response.choices_size(), 4);
  for (const auto& choice : response.choices()) EXPECT_EQ(choice.token_ids_size(), 250);
  EXPECT_EQ(server.wait(std::chrono::seconds(30)), std::optional<int>(0));
}

TEST(ServeLifecycle, OversizedRequestsNameTheFlagAndStatsMatchTheLastResponse) {
  ServerProcess server(2, {"--model", kModel, "--max-message-mib", "1"});
  Client client(server.address());
  // 1.5 MiB of text: over the 1 MiB limit, under gRPC's own (twice the limit).
  v1::GenerateRequest big;
  big.set_text(std::string(1536 * 1024, 'a'));
  big.mutable_sampling()->set_max_tokens(1);
  v1::GenerateResponse response;
  const grpc::Status status = client.generate(big, &response);
  EXPECT_EQ(status.error_code(), StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(status.error_message().find("--max-message-mib"), std::string::npos)
      << status.error_message();
  // Stats right after each response already exclude it: nothing in flight, no KV block held.
  for (int i = 0; i < 20; ++i) {
    v1::GenerateResponse done;
    ASSERT_TRUE(client.generate(Client::greedy({1, 2, 3}, 3 + i % 5), &done).ok());
    const v1::StatsResponse stats = client.stats();
    EXPECT_EQ(stats.requests_in_flight(), 0) << "after request " << i;
    EXPECT_EQ(stats.running_sequences(), 0) << "after request " << i;
    EXPECT_EQ(stats.kv_blocks_used(), 0) << "after request " << i;
    auto [ids, stream_status] = client.stream(Client::greedy({4, 5}, 2 + i % 3));
    ASSERT_TRUE(stream_status.ok());
    const v1::StatsResponse after_stream = client.stats();
    EXPECT_EQ(after_stream.requests_in_flight(), 0) << "after stream " << i;
    EXPECT_EQ(after_stream.kv_blocks_used(), 0) << "after stream " << i;
    EXPECT_GE(after_stream.generated_tokens(), stats.generated_tokens() + static_cast<int64_t>(ids.size()));
  }
}

}  // namespace
}  // namespace tpserve
