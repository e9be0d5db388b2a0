// The soak's client: for --seconds, Poisson arrivals at --rate requests/s against a running
// `tpserve serve`, each one a streaming request, a unary one, or a streaming one the client cancels
// after its first tokens (in --mix proportions). Random token-id prompts and lengths, greedy or
// sampled. A request fails when its status is not the expected one (OK, or CANCELLED for those
// cancelled) or an OK answer lacks tokens it was owed (ignore_eos: exactly max_tokens per choice).
// At the end it waits for the server to settle and reads Stats: requests still in flight and KV
// blocks still used are leaks. Prints one JSON object; exit 0 iff no failure and no leak.
//
//   tpserve_soak_client --addr 127.0.0.1:50051 --seconds 600 --rate 4
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tpserve/v1/generation.grpc.pb.h"

namespace {

namespace v1 = tpserve::v1;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string address = "127.0.0.1:50051";
  double seconds = 600;
  double rate = 2;
  int prompt_len = 16;  // mean; lengths uniform in mean * [0.5, 1.5]
  int output_len = 16;
  double stream_share = 0.4, unary_share = 0.4;  // the rest is cancelled
  int workers = 64;     // requests in flight at most (arrivals wait beyond that)
  uint64_t seed = 1;
};

enum class Kind { kStream, kUnary, kCancelled };

struct Tally {
  std::mutex mutex;
  int64_t sent = 0, ok = 0, cancelled = 0, failed = 0, late_starts = 0;
  std::vector<std::string> failures;  // the first few, for the report

  void fail(const std::string& why) {
    std::lock_guard lock(mutex);
    ++failed;
    if (failures.size() < 5) failures.push_back(why);
  }
};

v1::GenerateRequest make_request(std::mt19937_64& rng, const Options& o, int64_t vocab) {
  auto around = [&](int mean) {
    return std::uniform_int_distribution<int>(std::max(1, mean / 2), std::max(1, mean * 3 / 2))(rng);
  };
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(vocab - 1));
  v1::GenerateRequest request;
  for (int i = around(o.prompt_len); i > 0; --i) request.mutable_token_ids()->add_ids(token(rng));
  auto* sampling = request.mutable_sampling();
  sampling->set_max_tokens(around(o.output_len));
  sampling->set_ignore_eos(true);
  if (rng() % 2 == 0) {
    sampling->set_temperature(0.8f);
    sampling->set_top_p(0.9f);
    sampling->set_seed(rng() % 1000);
  } else {
    sampling->set_temperature(0);
  }
  if (rng() % 4 == 0) sampling->set_n(2);
  return request;
}

// Runs one request of `kind`; records its outcome.
void run_one(v1::Generation::Stub& stub, const v1::GenerateRequest& request, Kind kind, Tally& tally) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  const int n = std::max(1, request.sampling().n());
  const int owed = request.sampling().max_tokens() * n;
  int tokens = 0;
  grpc::Status status;
  if (kind == Kind::kUnary) {
    v1::GenerateResponse response;
    status = stub.Generate(&context, request, &response);
    for (const auto& choice : response.choices()) tokens += choice.token_ids_size();
  } else {
    auto reader = stub.GenerateStream(&context, request);
    v1::GenerateResponse response;
    while (reader->Read(&response)) {
      for (const auto& choice : response.choices()) tokens += choice.token_ids_size();
      if (kind == Kind::kCancelled && tokens > 0) context.TryCancel();
    }
    status = reader->Finish();
  }
  if (kind == Kind::kCancelled) {
    // A request short enough to finish before the cancel lands is fine too.
    if (status.error_code() == grpc::StatusCode::CANCELLED || (status.ok() && tokens == owed)) {
      std::lock_guard lock(tally.mutex);
      ++tally.cancelled;
      return;
    }
  } else if (status.ok() && tokens == owed) {
    std::lock_guard lock(tally.mutex);
    ++tally.ok;
    return;
  }
  tally.fail(std::string(kind == Kind::kUnary ? "unary" : kind == Kind::kStream ? "stream" : "cancel") +
             ": status " + std::to_string(status.error_code()) + " '" + status.error_message() +
             "', " + std::to_string(tokens) + " of " + std::to_string(owed) + " tokens");
}

bool parse(int argc, char** argv, Options& o) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--addr") o.address = value;
    else if (flag == "--seconds") o.seconds = std::stod(value);
    else if (flag == "--rate") o.rate = std::stod(value);
    else if (flag == "--prompt-len") o.prompt_len = std::stoi(value);
    else if (flag == "--output-len") o.output_len = std::stoi(value);
    else if (flag == "--workers") o.workers = std::stoi(value);
    else if (flag == "--seed") o.seed = std::stoull(value);
    else return false;
  }
  return argc % 2 == 1 && o.rate > 0 && o.seconds > 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, o)) {
    std::fprintf(stderr, "usage: %s --addr HOST:PORT --seconds S --rate R [--prompt-len N] "
                         "[--output-len N] [--workers N] [--seed N]\n", argv[0]);
    return 2;
  }
  auto channel = grpc::CreateChannel(o.address, grpc::InsecureChannelCredentials());
  auto stub = v1::Generation::NewStub(channel);
  v1::ModelInfoResponse info;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    const grpc::Status status = stub->ModelInfo(&context, v1::ModelInfoRequest(), &info);
    if (!status.ok()) {
      std::fprintf(stderr, "error: --addr %s: %s\n", o.address.c_str(), status.error_message().c_str());
      return 1;
    }
  }
  // The arrival schedule, fixed up front: start offset, kind and request of each.
  std::mt19937_64 rng(o.seed);
  std::exponential_distribution<double> gap(o.rate);
  std::uniform_real_distribution<double> pick(0, 1);
  struct Arrival {
    double at;
    Kind kind;
    v1::GenerateRequest request;
  };
  std::vector<Arrival> arrivals;
  for (double at = gap(rng); at < o.seconds; at += gap(rng)) {
    const double p = pick(rng);
    const Kind kind = p < o.stream_share ? Kind::kStream
                      : p < o.stream_share + o.unary_share ? Kind::kUnary : Kind::kCancelled;
    arrivals.push_back({at, kind, make_request(rng, o, info.vocab_size())});
  }
  Tally tally;
  std::atomic<size_t> next{0};
  const auto start = Clock::now();
  std::vector<std::thread> workers;
  for (int w = 0; w < o.workers; ++w) {
    workers.emplace_back([&] {
      for (size_t i; (i = next++) < arrivals.size();) {
        const auto due = start + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(arrivals[i].at));
        if (Clock::now() > due + std::chrono::milliseconds(100)) {
          std::lock_guard lock(tally.mutex);
          ++tally.late_starts;  // every worker was busy: the server is over capacity
        }
        std::this_thread::sleep_until(due);
        {
          std::lock_guard lock(tally.mutex);
          ++tally.sent;
        }
        run_one(*stub, arrivals[i].request, arrivals[i].kind, tally);
      }
    });
  }
  for (auto& t : workers) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  // Cancelled requests leave the batch within a step; give the server a moment to settle.
  v1::StatsResponse stats;
  for (int attempt = 0; attempt < 50; ++attempt) {
    grpc::ClientContext context;
    if (stub->Stats(&context, v1::StatsRequest(), &stats).ok() && stats.requests_in_flight() == 0 &&
        stats.kv_blocks_used() == 0) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const nlohmann::json report = {
      {"seconds", elapsed}, {"rate", o.rate}, {"requests", tally.sent}, {"ok", tally.ok},
      {"cancelled", tally.cancelled}, {"failed", tally.failed}, {"late_starts", tally.late_starts},
      {"in_flight_after", stats.requests_in_flight()}, {"kv_blocks_used_after", stats.kv_blocks_used()},
      {"kv_blocks_total", stats.kv_blocks_total()}, {"generated_tokens", stats.generated_tokens()},
      {"first_failures", tally.failures}};
  std::printf("%s\n", report.dump().c_str());
  const bool leaked = stats.requests_in_flight() != 0 || stats.kv_blocks_used() != 0;
  return tally.failed == 0 && !leaked ? 0 : 1;
}
