// `tpserve bench-serve --addr HOST:PORT`: a load generator for a running server. Sends streaming
// requests with random token-id prompts (lengths drawn uniformly around the given means), either
// at a fixed concurrency or at a Poisson request rate, and reports throughput, time to first
// token, inter-token latency and end-to-end latency percentiles. --json FILE writes the same.
// With --http HOST:PORT the same requests go to the OpenAI HTTP API instead (/v1/completions,
// token-id prompts, streamed), so both front ends of one server can be compared; gRPC's ModelInfo
// still supplies the vocabulary. --turns T makes multi-turn chats: each conversation sends T
// requests one after another, turn k's prompt being the earlier turns' prompts and replies plus a
// new user part, and TTFT is reported for first turns and later turns apart.
#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "launch/command.h"
#include "tpserve/v1/generation.grpc.pb.h"

namespace tpserve::launch {

namespace {

using Clock = std::chrono::steady_clock;

struct BenchServeOptions {
  std::string address = "127.0.0.1:50051";
  int requests = 64;
  int concurrency = 8;
  double rate = 0;  // requests/s; > 0 switches from fixed concurrency to Poisson arrivals
  int prompt_len = 128;
  int output_len = 64;
  double spread = 0.25;  // lengths uniform in mean * [1 - spread, 1 + spread]
  int shared_prefix = 0;  // tokens every prompt starts with (a system prompt), before its own
  // Replies shorter than max_tokens: every request lists `stop_ids` random token ids as stop
  // tokens and samples at temperature 1 (seeded), so a reply ends at the first one drawn (about
  // vocab / stop_ids tokens), and max_tokens is `max_tokens` (0: the drawn output length).
  int stop_ids = 0;
  int max_tokens = 0;
  // Multi-turn chats: each conversation sends `turns` requests in order; turn k's prompt is the
  // shared prefix, every earlier turn's user part and reply, then a new user part of --prompt-len.
  int turns = 1;
  uint64_t seed = 0;
  std::string json_path;
  std::string http_address;  // HOST:PORT of serve --http-port: bench the HTTP API instead
};

struct RequestTiming {
  bool ok = false;
  std::string error;  // a failed request's status: "message (code N)"
  double ttft = 0;
  std::vector<double> itl;
  double latency = 0;
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;
  std::vector<int32_t> output_ids;  // the reply (gRPC only), which later turns of a chat resend
  int turn = 0;                     // 0: a conversation's first request
};

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double index = p / 100.0 * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<size_t>(index);
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (values[hi] - values[lo]) * (index - static_cast<double>(lo));
}

RequestTiming run_one(v1::Generation::Stub& stub, const v1::GenerateRequest& request) {
  RequestTiming timing;
  grpc::ClientContext context;
  const auto start = Clock::now();
  auto last = start;
  auto reader = stub.GenerateStream(&context, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    const auto now = Clock::now();
    for (const auto& choice : response.choices()) {
      if (choice.token_ids_size() == 0) continue;
      const double gap = std::chrono::duration<double>(now - last).count();
      if (timing.output_tokens == 0) {
        timing.ttft = gap;
      } else {
        timing.itl.push_back(gap / choice.token_ids_size());
      }
      timing.output_tokens += choice.token_ids_size();
      timing.output_ids.insert(timing.output_ids.end(), choice.token_ids().begin(),
                               choice.token_ids().end());
      last = now;
    }
    if (response.has_usage()) timing.prompt_tokens = response.usage().prompt_tokens();
  }
  const grpc::Status status = reader->Finish();
  timing.ok = status.ok();
  if (!timing.ok) {
    timing.error = fmt::format("{} (code {})", status.error_message(),
                               static_cast<int>(status.error_code()));
  }
  timing.latency = std::chrono::duration<double>(Clock::now() - start).count();
  return timing;
}

// The same request over HTTP: one SSE chunk per step that produced text, the usage at the end.
RequestTiming run_one_http(httplib::Client& client, const v1::GenerateRequest& request) {
  RequestTiming timing;
  nlohmann::json body = {{"prompt", request.token_ids().ids()}, {"stream", true},
                         {"stream_options", {{"include_usage", true}}},
                         {"max_tokens", request.sampling().max_tokens()}, {"ignore_eos", true},
                         {"temperature", 0}};
  const auto start = Clock::now();
  auto last = start;
  std::string buffer;
  int chunks = 0;
  httplib::Request http;
  http.method = "POST";
  http.path = "/v1/completions";
  http.body = body.dump();
  http.set_header("Content-Type", "application/json");
  http.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
    buffer.append(data, size);
    for (size_t end; (end = buffer.find("\n\n")) != std::string::npos; buffer.erase(0, end + 2)) {
      const std::string event = buffer.substr(0, end);
      if (!event.starts_with("data: {")) continue;
      const auto chunk = nlohmann::json::parse(event.substr(6), nullptr, false);
      if (chunk.contains("usage") && chunk["usage"].is_object()) {
        timing.prompt_tokens = chunk["usage"]["prompt_tokens"].get<int64_t>();
        timing.output_tokens = chunk["usage"]["completion_tokens"].get<int64_t>();
      }
      if (!chunk.contains("choices") || chunk["choices"].empty()) continue;
      const auto now = Clock::now();
      const double gap = std::chrono::duration<double>(now - last).count();
      // A chunk carries one step's text: one token (a held-back partial character aside).
      if (chunks++ == 0) {
        timing.ttft = gap;
      } else {
        timing.itl.push_back(gap);
      }
      last = now;
    }
    return true;
  };
  const httplib::Result result = client.send(http);
  timing.ok = result && result->status == 200 && timing.output_tokens > 0;
  if (!timing.ok) {
    timing.error = !result ? fmt::format("HTTP: {}", httplib::to_string(result.error()))
                           : fmt::format("HTTP status {}: {}", result->status, result->body);
  }
  timing.latency = std::chrono::duration<double>(Clock::now() - start).count();
  return timing;
}

// The requests to send, in order. With --turns T, request c * T + k is turn k of conversation c and
// holds only that turn's new user part; run_conversation() puts the history in front of it.
std::vector<v1::GenerateRequest> make_requests(const BenchServeOptions& o, int64_t vocab) {
  std::mt19937_64 rng(o.seed);
  auto length = [&](int mean) {
    std::uniform_int_distribution<int> d(std::max(1, static_cast<int>(mean * (1 - o.spread))),
                                         std::max(1, static_cast<int>(mean * (1 + o.spread))));
    return d(rng);
  };
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> prefix(static_cast<size_t>(o.shared_prefix));
  for (int32_t& id : prefix) id = token(rng);
  std::vector<v1::GenerateRequest> requests(static_cast<size_t>(o.requests));
  for (size_t i = 0; i < requests.size(); ++i) {
    v1::GenerateRequest& r = requests[i];
    if (i % static_cast<size_t>(o.turns) == 0) {
      for (int32_t id : prefix) r.mutable_token_ids()->add_ids(id);
    }
    for (int n = length(o.prompt_len); n > 0; --n) r.mutable_token_ids()->add_ids(token(rng));
    const int output_len = length(o.output_len);
    r.mutable_sampling()->set_max_tokens(o.max_tokens > 0 ? o.max_tokens : output_len);
    r.mutable_sampling()->set_ignore_eos(true);
    r.mutable_sampling()->set_temperature(0);
    if (o.stop_ids > 0) {
      r.mutable_sampling()->set_temperature(1);
      r.mutable_sampling()->set_seed(rng());
      for (int n = 0; n < o.stop_ids; ++n) r.mutable_sampling()->add_stop_token_ids(token(rng));
    }
  }
  return requests;
}

// Conversation `c`'s turns, one after another: each turn's prompt is everything said before it
// (prompts and replies) followed by its own new part.
void run_conversation(v1::Generation::Stub& stub, const BenchServeOptions& o,
                      const std::vector<v1::GenerateRequest>& requests, size_t c,
                      std::vector<RequestTiming>& timings) {
  std::vector<int32_t> history;
  const size_t first = c * static_cast<size_t>(o.turns);
  for (size_t i = first; i < std::min(requests.size(), first + static_cast<size_t>(o.turns)); ++i) {
    v1::GenerateRequest request = requests[i];
    const auto& part = requests[i].token_ids().ids();
    history.insert(history.end(), part.begin(), part.end());
    request.mutable_token_ids()->mutable_ids()->Assign(history.begin(), history.end());
    timings[i] = run_one(stub, request);
    timings[i].turn = static_cast<int>(i - first);
    if (!timings[i].ok) break;  // the rest of this chat is not sent (counted as failed below)
    history.insert(history.end(), timings[i].output_ids.begin(), timings[i].output_ids.end());
  }
}

int run_bench_serve(const BenchServeOptions& o) {
  if (o.rate > 0 && !o.http_address.empty()) {
    std::fprintf(stderr, "error: --http runs at a fixed --concurrency; drop --rate\n");
    return 1;
  }
  if (o.turns > 1 && (o.rate > 0 || !o.http_address.empty())) {
    std::fprintf(stderr, "error: --turns %d runs over gRPC at a fixed --concurrency (conversations in "
                 "flight); drop %s\n", o.turns, o.rate > 0 ? "--rate" : "--http");
    return 1;
  }
  auto channel = grpc::CreateChannel(o.address, grpc::InsecureChannelCredentials());
  auto stub = v1::Generation::NewStub(channel);
  v1::ModelInfoResponse info;
  {
    grpc::ClientContext context;
    const grpc::Status status = stub->ModelInfo(&context, v1::ModelInfoRequest(), &info);
    if (!status.ok()) {
      std::fprintf(stderr, "error: %s: %s\n", o.address.c_str(), status.error_message().c_str());
      return 1;
    }
  }
  const std::vector<v1::GenerateRequest> requests = make_requests(o, info.vocab_size());
  std::vector<RequestTiming> timings(requests.size());
  // gRPC: a connection per 8 workers rather than every stream multiplexed over one, so that at
  // high concurrency one connection's client-side reader is not what is measured; HTTP: one
  // kept-alive connection per worker, as a client pool would hold.
  std::vector<std::unique_ptr<v1::Generation::Stub>> stubs;
  for (int w = 0; o.rate <= 0 && w < o.concurrency; w += 8) {
    grpc::ChannelArguments args;
    args.SetInt("tpserve.bench_connection", w);  // distinct arguments: a connection of its own
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto connection = grpc::CreateCustomChannel(o.address, grpc::InsecureChannelCredentials(), args);
    // Connected before the clock starts, so that the first requests do not race the connection
    // (once in ~60 runs at 64 streams on a loaded machine, RPCs on a channel whose first connect
    // attempt had failed all failed at once). One that still fails shows as failed requests.
    (void)connection->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10));
    stubs.push_back(v1::Generation::NewStub(connection));
  }
  std::atomic<size_t> next{0};
  const auto start = Clock::now();
  if (o.rate > 0) {
    // Poisson arrivals: each request on its own thread at its exponential-gap start time.
    std::mt19937_64 rng(o.seed + 1);
    std::exponential_distribution<double> gap(o.rate);
    std::vector<std::thread> threads;
    double at = 0;
    for (size_t i = 0; i < requests.size(); ++i) {
      threads.emplace_back([&, i, at] {
        std::this_thread::sleep_until(start + std::chrono::duration<double>(at));
        timings[i] = run_one(*stub, requests[i]);
      });
      at += gap(rng);
    }
    for (auto& t : threads) t.join();
  } else {
    std::vector<std::thread> workers;
    for (int w = 0; w < o.concurrency; ++w) {
      workers.emplace_back([&, w] {
        v1::Generation::Stub& stub = *stubs[static_cast<size_t>(w / 8)];
        if (!o.http_address.empty()) {
          // One kept-alive connection per worker, as an HTTP client pool would hold.
          httplib::Client client("http://" + o.http_address);
          client.set_read_timeout(600);
          client.set_tcp_nodelay(true);
          for (size_t i; (i = next++) < requests.size();) {
            timings[i] = run_one_http(client, requests[i]);
          }
          return;
        }
        if (o.turns > 1) {
          const size_t conversations = (requests.size() + o.turns - 1) / o.turns;
          for (size_t c; (c = next++) < conversations;) run_conversation(stub, o, requests, c, timings);
          return;
        }
        for (size_t i; (i = next++) < requests.size();) timings[i] = run_one(stub, requests[i]);
      });
    }
    for (auto& t : workers) t.join();
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> ttft, itl, latency, ttft_first_turn, ttft_later_turns;
  int64_t prompt_tokens = 0, output_tokens = 0;
  int failed = 0;
  std::string first_error;
  for (const RequestTiming& t : timings) {
    if (!t.ok) {
      if (failed++ == 0) first_error = t.error;
      continue;
    }
    ttft.push_back(t.ttft);
    (t.turn == 0 ? ttft_first_turn : ttft_later_turns).push_back(t.ttft);
    latency.push_back(t.latency);
    itl.insert(itl.end(), t.itl.begin(), t.itl.end());
    prompt_tokens += t.prompt_tokens;
    output_tokens += t.output_tokens;
  }
  nlohmann::json report = {
      {"address", o.address}, {"front_end", o.http_address.empty() ? "grpc" : "http"},
      {"architecture", info.architecture()}, {"tp_size", info.tp_size()},
      {"backend", info.backend()}, {"requests", o.requests}, {"failed", failed},
      {"first_error", first_error},
      {"concurrency", o.rate > 0 ? 0 : o.concurrency}, {"rate", o.rate},
      {"prompt_len_mean", o.prompt_len}, {"shared_prefix", o.shared_prefix}, {"turns", o.turns},
      {"output_len_mean", o.output_len},
      {"elapsed_s", elapsed}, {"request_throughput", (o.requests - failed) / elapsed},
      {"output_tokens_per_s", output_tokens / elapsed},
      {"total_tokens_per_s", (prompt_tokens + output_tokens) / elapsed}};
  for (auto [name, values] : {std::pair{"ttft", &ttft}, {"itl", &itl}, {"latency", &latency},
                              {"ttft_first_turn", &ttft_first_turn}, {"ttft_later_turns", &ttft_later_turns}}) {
    for (double p : {50.0, 90.0, 99.0}) {
      report[fmt::format("{}_p{}_ms", name, static_cast<int>(p))] = percentile(*values, p) * 1e3;
    }
  }
  std::printf("%s tp=%d %s over %s: %d requests (%d failed) in %.2f s\n",
              info.architecture().c_str(), info.tp_size(), info.backend().c_str(),
              o.http_address.empty() ? "gRPC" : "HTTP", o.requests, failed, elapsed);
  if (failed) std::fprintf(stderr, "error: the first failed request: %s\n", first_error.c_str());
  std::printf("throughput: %.2f req/s, %.1f output tok/s, %.1f total tok/s\n",
              report["request_throughput"].get<double>(), report["output_tokens_per_s"].get<double>(),
              report["total_tokens_per_s"].get<double>());
  for (const char* name : {"ttft", "itl", "latency"}) {
    std::printf("%-8s p50 %8.2f ms  p90 %8.2f ms  p99 %8.2f ms\n", name,
                report[fmt::format("{}_p50_ms", name)].get<double>(),
                report[fmt::format("{}_p90_ms", name)].get<double>(),
                report[fmt::format("{}_p99_ms", name)].get<double>());
  }
  if (o.turns > 1) {
    for (auto [label, name] : {std::pair{"turn 1", "ttft_first_turn"}, {"turns 2+", "ttft_later_turns"}}) {
      std::printf("ttft %-8s p50 %8.2f ms  p90 %8.2f ms  p99 %8.2f ms\n", label,
                  report[fmt::format("{}_p50_ms", name)].get<double>(),
                  report[fmt::format("{}_p90_ms", name)].get<double>(),
                  report[fmt::format("{}_p99_ms", name)].get<double>());
    }
  }
  v1::StatsResponse stats;
  grpc::ClientContext stats_context;
  if (stub->Stats(&stats_context, v1::StatsRequest(), &stats).ok()) {
    // Server totals since it started: the KV and speculation counters behind the timings above.
    report["server_preemptions"] = stats.preemptions();
    report["server_prefix_hit_tokens"] = stats.prefix_hit_tokens();
    report["server_prefix_query_tokens"] = stats.prefix_query_tokens();
    report["server_draft_tokens"] = stats.draft_tokens();
    report["server_accepted_draft_tokens"] = stats.accepted_draft_tokens();
    report["server_steps"] = stats.steps();
    std::printf("server: %lld steps, %lld preemptions, prefix cache %lld of %lld prompt tokens, "
                "%lld of %lld n-gram drafts accepted\n",
                static_cast<long long>(stats.steps()), static_cast<long long>(stats.preemptions()),
                static_cast<long long>(stats.prefix_hit_tokens()),
                static_cast<long long>(stats.prefix_query_tokens()),
                static_cast<long long>(stats.accepted_draft_tokens()),
                static_cast<long long>(stats.draft_tokens()));
  }
  if (!o.json_path.empty()) std::ofstream(o.json_path) << report.dump(2) << "\n";
  return failed == 0 ? 0 : 1;
}

}  // namespace

void register_bench_serve_command(CLI::App& app, CommandRunner& runner) {
  auto o = std::make_shared<BenchServeOptions>();
  CLI::App* sub = app.add_subcommand("bench-serve", "Load-test a running tpserve server");
  sub->add_option("--addr", o->address, "Server address HOST:PORT");
  sub->add_option("--requests", o->requests, "Requests to send")->check(CLI::Range(1, 1000000));
  sub->add_option("--concurrency", o->concurrency, "Requests in flight (fixed-concurrency mode)")
      ->check(CLI::Range(1, 4096));
  sub->add_option("--rate", o->rate, "Poisson request rate per second (instead of concurrency)")
      ->check(CLI::Range(0.0, 1e6));
  sub->add_option("--prompt-len", o->prompt_len, "Mean prompt length in tokens")->check(CLI::Range(1, 1 << 20));
  sub->add_option("--output-len", o->output_len, "Mean output length in tokens")->check(CLI::Range(1, 1 << 20));
  sub->add_option("--spread", o->spread, "Lengths uniform in mean*(1±spread)")->check(CLI::Range(0.0, 0.99));
  sub->add_option("--shared-prefix", o->shared_prefix,
                  "Tokens every prompt starts with (a shared system prompt), before its own --prompt-len")
      ->check(CLI::Range(0, 1 << 20));
  sub->add_option("--stop-ids", o->stop_ids,
                  "Random stop token ids per request, sampled at temperature 1: replies of about "
                  "vocab/N tokens, shorter than --max-tokens")
      ->check(CLI::Range(0, 1 << 20));
  sub->add_option("--max-tokens", o->max_tokens, "max_tokens of every request (default: its drawn output length)")
      ->check(CLI::Range(0, 1 << 20));
  sub->add_option("--turns", o->turns,
                  "Multi-turn chats: each conversation sends N requests in order, each resending the "
                  "earlier prompts and replies before a new --prompt-len part (gRPC, fixed concurrency)")
      ->check(CLI::Range(1, 1000));
  sub->add_option("--seed", o->seed, "Seed for the prompts and arrivals");
  sub->add_option("--json", o->json_path, "Write the report as JSON to this file");
  sub->add_option("--http", o->http_address,
                  "HOST:PORT of serve --http-port: send the requests over the OpenAI HTTP API");
  sub->callback([o, &runner] { runner = [o] { return run_bench_serve(*o); }; });
}

}  // namespace tpserve::launch
