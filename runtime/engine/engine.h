// The serving engine: requests in, token streams out, every step run tensor-parallel.
//
// Rank 0 runs Engine::run() on its main thread (the only thread that makes MPI calls): it takes
// requests queued by front-end threads (submit), lets the Scheduler build each step, broadcasts
// the step, runs its own shard, samples from the gathered logits, detokenizes and pushes events to
// each request's RequestStream. Every other rank runs Engine::follow(), executing whatever rank 0
// broadcasts. While idle, rank 0 broadcasts an empty heartbeat step every heartbeat interval, so
// the collective watchdog on every rank still notices a dead peer.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "parallel/communicator.h"
#include "runtime/engine/histogram.h"
#include "runtime/engine/request_stream.h"
#include "runtime/engine/sampling_params.h"
#include "runtime/engine/scheduler.h"
#include "runtime/model/model.h"
#include "runtime/tokenizer/tokenizer.h"

namespace tpserve::runtime {

struct GenerationRequest {
  std::vector<int32_t> prompt_ids;
  SamplingParams params;
  std::optional<std::chrono::steady_clock::time_point> deadline;
  std::chrono::steady_clock::time_point arrival;  // set by submit(): TTFT counts from here
  int32_t priority = 0;  // higher runs first; equal priorities in arrival order
};

struct EngineOptions {
  int max_queued_requests = 256;  // beyond this, submit() refuses with kResourceExhausted
  std::chrono::milliseconds heartbeat{1000};
  SamplingLimits limits;          // vocab_size is filled from the model
  KvAdmission kv_admission = KvAdmission::kOnDemand;  // scheduler.h
  double kv_watermark = 0.01;     // on-demand: fraction of KV blocks kept free when admitting
  bool prefix_caching = true;
  // N-gram (prompt-lookup) drafts per decoding sequence and step (scheduler.h); 0: off. Needs
  // the model's max_logit_rows above max_seqs to have room for them.
  int speculative_ngram = 0;
};

struct EngineStats {
  int64_t queued_requests = 0;
  int64_t running_sequences = 0;
  int64_t waiting_sequences = 0;
  int32_t kv_blocks_used = 0;
  int32_t kv_blocks_total = 0;
  int64_t prompt_tokens = 0;      // totals since start
  int64_t generated_tokens = 0;
  int64_t steps = 0;
  int64_t preemptions = 0;        // sequences preempted (recompute) since start
  int64_t prefix_query_tokens = 0;  // prompt tokens admitted, and of those, served from the
  int64_t prefix_hit_tokens = 0;    // prefix cache
  int32_t kv_blocks_cached = 0;   // blocks holding a reusable prefix (in use or not)
  int64_t draft_tokens = 0;       // n-gram drafts verified, and of those, accepted
  int64_t accepted_draft_tokens = 0;
};

class Engine {
 public:
  // `tokenizer` may be null (token-id requests only; stop strings are then refused).
  Engine(Model& model, parallel::Communicator& comm, const Tokenizer* tokenizer,
         EngineOptions options);
  ~Engine();

  // Any thread. Validates the request (a tpserve::Error naming the field: kInvalidArgument,
  // kOutOfRange, kResourceExhausted), then queues it. Events arrive on the returned stream.
  std::shared_ptr<RequestStream> submit(GenerationRequest request);

  // Rank 0's main thread: serves until shutdown() and drained; then tells the other ranks to stop.
  // A peer rank that dies or hangs (parallel::PeerFailure from the communicator) fails every
  // request in flight, and every later submit(), with kUnavailable and the failure's reason; then
  // the PeerFailure propagates (the other ranks were not told to stop: end the job).
  void run();

  // Any thread. Stop taking requests; in-flight ones get until `drain` to finish, then fail
  // with kUnavailable. run() returns after that.
  void shutdown(std::chrono::milliseconds drain);
  bool accepting() const { return !shutting_down_.load(); }

  EngineStats stats() const;
  // What a request's unset sampling fields become (sampling_defaults: the model's
  // generation_config.json over vLLM's defaults), whether that file exists, and every token id
  // that ends a sequence unless ignore_eos (config.json, generation_config.json, the tokenizer's).
  const SamplingParams& sampling_defaults() const { return sampling_defaults_; }
  bool generation_config_defaults() const { return generation_config_defaults_; }
  const std::vector<int32_t>& eos_token_ids() const { return eos_ids_; }
  // Time to first token and between tokens, per sequence, in seconds.
  const Histogram& time_to_first_token() const { return ttft_; }
  const Histogram& inter_token_latency() const { return itl_; }

  // Every rank but 0: execute rank 0's steps until it says stop.
  static void follow(Model& model, parallel::Communicator& comm);

 private:
  struct SequenceRun;
  struct RequestRun;

  void take_new_requests();
  void drop_abandoned_requests();
  void run_step();
  void sample_rows(const ScheduledStep& step, const std::vector<float>& logits);
  void serve();
  void fail_all(const parallel::PeerFailure& failure);
  void finish_sequence(SequenceRun& sequence, FinishReason reason);
  // Ends the request now with `error` (or none), its sequences and blocks freed first.
  void close_request(uint64_t request_id, std::optional<Error> error);
  void close_all(const Error& error);
  void publish_stats();  // the request, sequence and KV block counts Stats reports
  void idle_wait();

  Model& model_;
  parallel::Communicator& comm_;
  const Tokenizer* tokenizer_;
  EngineOptions options_;
  Scheduler scheduler_;
  std::vector<int32_t> eos_ids_;
  SamplingParams sampling_defaults_;
  bool generation_config_defaults_ = false;

  // Shared with front-end threads.
  mutable std::mutex inbox_mutex_;
  std::condition_variable inbox_ready_;
  std::vector<std::pair<std::shared_ptr<RequestStream>, GenerationRequest>> inbox_;
  std::atomic<bool> shutting_down_{false};
  std::chrono::steady_clock::time_point drain_deadline_;
  std::string failure_;  // a peer's failure: why every request is refused
  uint64_t next_request_id_ = 1;

  // Engine thread only.
  std::map<uint64_t, std::unique_ptr<RequestRun>> requests_;
  std::map<uint64_t, std::unique_ptr<SequenceRun>> sequences_;
  uint64_t next_sequence_id_ = 1;
  std::vector<float> logits_;

  mutable std::mutex stats_mutex_;
  EngineStats stats_;
  Histogram ttft_{Histogram::latency_bounds()};
  Histogram itl_{Histogram::latency_bounds()};
};

}  // namespace tpserve::runtime
