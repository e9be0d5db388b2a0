#include "runtime/engine/engine.h"

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <thread>

#include "common/check.h"
#include "common/log.h"
#include "runtime/engine/sampler.h"
#include "runtime/engine/stop_matcher.h"

namespace tpserve::runtime {

using Clock = std::chrono::steady_clock;

// One of a request's n sequences.
struct Engine::SequenceRun {
  uint64_t id = 0;
  uint64_t request_id = 0;
  int32_t index = 0;
  std::unique_ptr<SequenceSampler> sampler;
  std::unique_ptr<IncrementalDecoder> decoder;  // null without a tokenizer
  std::unique_ptr<StopMatcher> stop;
  std::vector<int32_t> output;
  std::chrono::steady_clock::time_point last_token;
};

struct Engine::RequestRun {
  uint64_t id = 0;
  std::shared_ptr<RequestStream> stream;
  GenerationRequest request;
  std::vector<uint64_t> open_sequences;
  Usage usage;
};

namespace {

SchedulerOptions scheduler_options(const Model& model, const EngineOptions& options) {
  const ModelOptions& m = model.options();
  SchedulerOptions s;
  s.admission = options.kv_admission;
  s.watermark = options.kv_watermark;
  // Dynamic NTK RoPE (LLaMA "dynamic", Qwen v1's use_dynamic_ntk) rotates a key by a factor taken
  // from its sequence's prompt length, so a cached block is not a function of its tokens alone: a
  // longer prompt sharing the prefix computes those keys differently. Such models run without it.
  const RopeScaling scaling = model.config().rope.scaling;
  const bool length_dependent_rope = scaling == RopeScaling::kDynamic || scaling == RopeScaling::kQwenNtk;
  s.prefix_caching = options.prefix_caching && !length_dependent_rope;
  if (options.prefix_caching && length_dependent_rope && model.shape().rank == 0) {
    log().info("prefix caching is off: this model's dynamic NTK RoPE rotates cached keys by a factor "
               "that depends on the prompt's length");
  }
  s.speculative_ngram = options.speculative_ngram;
  s.num_kv_blocks = m.num_kv_blocks;
  s.block_size = m.block_size;
  s.max_tokens_per_step = m.max_tokens_per_step;
  s.max_seqs = std::min(m.max_seqs, m.max_logit_rows);
  s.max_logit_rows = m.max_logit_rows;  // room for drafts when above max_seqs
  s.max_context = std::min<int64_t>(model.config().max_position_embeddings,
                                    static_cast<int64_t>(m.max_blocks_per_seq) * m.block_size);
  return s;
}

}  // namespace

Engine::Engine(Model& model, parallel::Communicator& comm, const Tokenizer* tokenizer,
               EngineOptions options)
    : model_(model), comm_(comm), tokenizer_(tokenizer), options_(std::move(options)),
      scheduler_(scheduler_options(model, options_)) {
  options_.limits.vocab_size = static_cast<int32_t>(model.config().vocab_size);
  // generation_config.json was already read (and any error in it reported, on rank 0 within the
  // load phase) by Tokenizer::load through the same reader; without a tokenizer it is read here.
  const GenerationConfig generation = read_generation_config(model.config().dir);
  sampling_defaults_ = runtime::sampling_defaults(generation, options_.limits.vocab_size);
  generation_config_defaults_ = generation.present;
  eos_ids_ = model.config().eos_token_ids;
  const auto add_eos = [&](int32_t id) {
    if (id < options_.limits.vocab_size &&
        std::find(eos_ids_.begin(), eos_ids_.end(), id) == eos_ids_.end()) {
      eos_ids_.push_back(id);
    }
  };
  for (int32_t id : generation.eos_token_ids) add_eos(id);
  if (tokenizer_ != nullptr) {
    for (int32_t id : tokenizer_->eos_token_ids()) add_eos(id);
  }
  stats_.kv_blocks_total = scheduler_.blocks_total();
}

Engine::~Engine() = default;

std::shared_ptr<RequestStream> Engine::submit(GenerationRequest request) {
  const auto& prompt = request.prompt_ids;
  if (prompt.empty()) raise(ErrorCode::kInvalidArgument, "prompt: empty");
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (prompt[i] < 0 || prompt[i] >= model_.config().vocab_size) {
      raise(ErrorCode::kOutOfRange, "prompt_ids[{}]: token {} is outside the vocabulary [0, {})", i,
            prompt[i], model_.config().vocab_size);
    }
  }
  validate(request.params, options_.limits);
  if (!request.params.stop.empty() && tokenizer_ == nullptr) {
    raise(ErrorCode::kInvalidArgument, "stop: stop strings need the model's tokenizer, which this "
          "model directory lacks");
  }
  if (auto reason = scheduler_.never_fits(static_cast<int64_t>(prompt.size()),
                                          request.params.max_tokens)) {
    raise(ErrorCode::kOutOfRange, "max_tokens: {}", *reason);
  }
  request.arrival = Clock::now();
  std::lock_guard lock(inbox_mutex_);
  // Checked under the lock that shutdown() and a peer failure take: no request slips in after.
  if (shutting_down_.load()) {
    raise(ErrorCode::kUnavailable, "{}", failure_.empty() ? "the server is shutting down" : failure_);
  }
  if (static_cast<int>(inbox_.size()) + stats().queued_requests >= options_.max_queued_requests) {
    raise(ErrorCode::kResourceExhausted, "the request queue is full ({} requests)",
          options_.max_queued_requests);
  }
  auto stream = std::make_shared<RequestStream>(next_request_id_++);
  inbox_.emplace_back(stream, std::move(request));
  inbox_ready_.notify_one();
  return stream;
}

void Engine::shutdown(std::chrono::milliseconds drain) {
  std::lock_guard lock(inbox_mutex_);
  drain_deadline_ = Clock::now() + drain;
  shutting_down_.store(true);
  inbox_ready_.notify_one();
}

EngineStats Engine::stats() const {
  std::lock_guard lock(stats_mutex_);
  return stats_;
}

void Engine::take_new_requests() {
  std::vector<std::pair<std::shared_ptr<RequestStream>, GenerationRequest>> arrived;
  {
    std::lock_guard lock(inbox_mutex_);
    arrived.swap(inbox_);
  }
  for (auto& [stream, request] : arrived) {
    auto run = std::make_unique<RequestRun>();
    run->id = stream->id();
    run->stream = stream;
    run->request = std::move(request);
    run->usage.prompt_tokens = static_cast<int64_t>(run->request.prompt_ids.size());
    const SamplingParams& params = run->request.params;
    for (int32_t index = 0; index < params.n; ++index) {
      auto sequence = std::make_unique<SequenceRun>();
      sequence->id = next_sequence_id_++;
      sequence->request_id = run->id;
      sequence->index = index;
      SamplingParams own = params;
      // n seeded samples must differ from each other yet each reproduce: seed + index.
      if (own.seed) own.seed = *own.seed + static_cast<uint64_t>(index);
      sequence->sampler = std::make_unique<SequenceSampler>(own);
      if (tokenizer_ != nullptr) {
        sequence->decoder = std::make_unique<IncrementalDecoder>(*tokenizer_, true);
      }
      sequence->stop = std::make_unique<StopMatcher>(params.stop);
      scheduler_.add(sequence->id, run->request.prompt_ids, params.max_tokens,
                     run->request.priority);
      run->open_sequences.push_back(sequence->id);
      sequences_.emplace(sequence->id, std::move(sequence));
    }
    std::lock_guard lock(stats_mutex_);
    stats_.prompt_tokens += run->usage.prompt_tokens * params.n;
    requests_.emplace(run->id, std::move(run));
  }
}

// Client cancellations and deadlines: the request's sequences leave before the next step.
void Engine::drop_abandoned_requests() {
  const auto now = Clock::now();
  std::vector<RequestRun*> abandoned;
  for (auto& [id, run] : requests_) {
    const bool expired = run->request.deadline && now > *run->request.deadline;
    if (run->stream->cancelled() || expired) abandoned.push_back(run.get());
  }
  for (RequestRun* run : abandoned) {
    const bool expired = !run->stream->cancelled();
    for (uint64_t id : std::vector<uint64_t>(run->open_sequences)) {
      finish_sequence(*sequences_.at(id), expired ? FinishReason::kDeadline : FinishReason::kCancelled);
    }
  }
}

void Engine::finish_sequence(SequenceRun& sequence, FinishReason reason) {
  RequestRun& run = *requests_.at(sequence.request_id);
  scheduler_.remove(sequence.id);
  SequenceDelta delta;
  delta.index = sequence.index;
  delta.finish_reason = reason;
  if (reason == FinishReason::kLength || reason == FinishReason::kStop) {
    delta.text = sequence.stop->finish();  // text held back for a stop string that never came
  }
  RequestEvent event;
  event.deltas.push_back(std::move(delta));
  auto& open = run.open_sequences;
  open.erase(std::find(open.begin(), open.end(), sequence.id));
  const uint64_t request_id = run.id;
  sequences_.erase(sequence.id);
  if (!open.empty()) {
    run.stream->push(std::move(event));
    return;
  }
  event.done = true;
  event.usage = run.usage;
  if (reason == FinishReason::kDeadline) {
    event.error = Error(ErrorCode::kDeadlineExceeded, "the request's deadline passed before it finished");
  }
  const std::shared_ptr<RequestStream> stream = run.stream;
  requests_.erase(request_id);
  // Stats read right after the last event must no longer count this request.
  publish_stats();
  stream->push(std::move(event));
}

void Engine::close_request(uint64_t request_id, std::optional<Error> error) {
  RequestRun& run = *requests_.at(request_id);
  for (uint64_t id : run.open_sequences) {
    scheduler_.remove(id);
    sequences_.erase(id);
  }
  RequestEvent event;
  event.done = true;
  event.error = std::move(error);
  event.usage = run.usage;
  const std::shared_ptr<RequestStream> stream = run.stream;
  requests_.erase(request_id);
  publish_stats();
  stream->push(std::move(event));
}

void Engine::publish_stats() {
  std::lock_guard lock(stats_mutex_);
  stats_.queued_requests = static_cast<int64_t>(requests_.size());
  stats_.running_sequences = static_cast<int64_t>(scheduler_.num_running());
  stats_.waiting_sequences = static_cast<int64_t>(scheduler_.num_waiting());
  stats_.kv_blocks_used = scheduler_.blocks_used();
  stats_.kv_blocks_cached = scheduler_.blocks_cached();
  const SchedulerCounters& counters = scheduler_.counters();
  stats_.preemptions = counters.preemptions;
  stats_.draft_tokens = counters.draft_tokens;
  stats_.prefix_query_tokens = counters.prefix_query_tokens;
  stats_.prefix_hit_tokens = counters.prefix_hit_tokens;
}

// Verifying n-gram drafts. The standard speculative rule (Leviathan et al. 2023; Chen et al.
// 2023) accepts a draft token d with probability min(1, p(d) / q(d)) and on rejection draws from
// max(0, p - q) renormalised. A prompt-lookup draft is deterministic, q = one-hot at d, so that is
// "accept with probability p(d), else draw from p without d": exactly drawing x ~ p and accepting
// iff x == d. So every row is sampled as usual, and the sequence keeps drafts while they equal the
// sampled token. Greedy output is then plain greedy's; sampled output has plain sampling's
// distribution, and a seeded sequence uses draw i of its RNG for its i-th token either way, so it
// gives the same tokens (up to the logits' own rounding).
void Engine::sample_rows(const ScheduledStep& step, const std::vector<float>& logits) {
  const auto vocab = static_cast<size_t>(model_.config().vocab_size);
  const size_t rows = step.logit_seqs.size();
  std::vector<int32_t> kept;  // this step's tokens of the sequence whose rows are being sampled
  for (size_t row = 0; row < rows; ++row) {
    const uint64_t id = step.logit_seqs[row];
    if (row == 0 || step.logit_seqs[row - 1] != id) kept.clear();
    const auto found = sequences_.find(id);
    // Its request failed, or it finished on an earlier row of this step.
    if (found == sequences_.end()) continue;
    SequenceRun& sequence = *found->second;
    RequestRun& run = *requests_.at(sequence.request_id);
    const SamplingParams& params = run.request.params;
    const std::span<const float> row_logits(logits.data() + row * vocab, vocab);
    SampleResult result;
    try {
      result = sequence.sampler->sample(row_logits, run.request.prompt_ids, sequence.output);
    } catch (const Error& e) {
      // Non-finite logits: this request fails; the batch and the server go on.
      log().error("request {}: {}", run.id, e.what());
      close_request(run.id, e);
      continue;
    }
    const int32_t token = result.token_id;
    const auto now = Clock::now();
    const auto since = sequence.output.empty() ? run.request.arrival : sequence.last_token;
    (sequence.output.empty() ? ttft_ : itl_).observe(std::chrono::duration<double>(now - since).count());
    sequence.last_token = now;
    sequence.output.push_back(token);
    ++run.usage.completion_tokens;
    SequenceDelta delta;
    delta.index = sequence.index;
    delta.token_ids.push_back(token);
    if (params.logprobs > 0) {
      delta.logprobs.push_back(result.logprob);
      std::vector<TokenLogprob> top;
      for (const auto& alternative : result.top_logprobs) top.push_back({alternative.token_id, alternative.logprob});
      delta.top_logprobs.push_back(std::move(top));
    }
    const auto& stop_ids = params.stop_token_ids;
    const bool stop_token = std::find(stop_ids.begin(), stop_ids.end(), token) != stop_ids.end() ||
                            (!params.ignore_eos &&
                             std::find(eos_ids_.begin(), eos_ids_.end(), token) != eos_ids_.end());
    bool stopped = stop_token;
    if (!stop_token && sequence.decoder) {
      // Only ids the tokenizer knows have text (models pad their vocabulary past it).
      const std::string piece = token < tokenizer_->vocab_size() ? sequence.decoder->push(token) : "";
      const StopMatch match = sequence.stop->push(piece);
      delta.text = match.text;
      stopped = match.stopped;
    }
    const bool length = static_cast<int32_t>(sequence.output.size()) >= params.max_tokens;
    const int32_t draft = step.logit_drafts[row];
    {
      // Counted before the token is pushed, so a client never sees a token Stats lacks.
      std::lock_guard lock(stats_mutex_);
      ++stats_.generated_tokens;
      if (draft >= 0 && draft == token) ++stats_.accepted_draft_tokens;
    }
    run.stream->push(RequestEvent{{std::move(delta)}, false, std::nullopt, {}});
    if (stopped || length) {
      finish_sequence(sequence, stopped ? FinishReason::kStop : FinishReason::kLength);
      continue;
    }
    kept.push_back(token);
    // A draft equal to the token sampled in its place is accepted: the next row, computed with
    // it in the context, gives the token after it. Otherwise this token replaces the draft and
    // the sequence's later rows (computed on a context it does not have) are dropped.
    const bool more_rows = row + 1 < rows && step.logit_seqs[row + 1] == id;
    if (draft >= 0 && draft == token && more_rows) continue;
    scheduler_.append_tokens(id, kept);
    while (row + 1 < rows && step.logit_seqs[row + 1] == id) ++row;
  }
}

void Engine::run_step() {
  ScheduledStep step = scheduler_.schedule();
  if (step.input.num_tokens() == 0) return;
  broadcast_step(comm_, step.input);
  model_.forward(step.input, logits_);
  {
    std::lock_guard lock(stats_mutex_);
    ++stats_.steps;
  }
  // Before this step's tokens reach their clients: Stats read right after a token must count the
  // KV blocks and sequences that made it (serve()'s own publish comes only at the next iteration).
  publish_stats();
  sample_rows(step, logits_);
}

void Engine::idle_wait() {
  std::unique_lock lock(inbox_mutex_);
  const bool woke = inbox_ready_.wait_for(lock, options_.heartbeat, [&] {
    return !inbox_.empty() || shutting_down_.load();
  });
  lock.unlock();
  if (!woke) {
    StepInput heartbeat;  // no tokens: the other ranks only prove they are alive
    broadcast_step(comm_, heartbeat);
  }
}

void Engine::run() {
  TPS_CHECK(comm_.rank() == 0, "Engine::run on rank {}", comm_.rank());
  try {
    serve();
  } catch (const parallel::PeerFailure& failure) {
    fail_all(failure);
    throw;
  }
}

void Engine::fail_all(const parallel::PeerFailure& failure) {
  {
    std::lock_guard lock(inbox_mutex_);
    failure_ = failure.what();
    shutting_down_.store(true);
  }
  take_new_requests();  // those submitted meanwhile get the same answer
  close_all(Error(ErrorCode::kUnavailable, failure.what()));
}

void Engine::close_all(const Error& error) {
  std::vector<uint64_t> ids;
  for (const auto& [id, run] : requests_) ids.push_back(id);
  for (uint64_t id : ids) close_request(id, error);
}

void Engine::serve() {
  for (;;) {
    take_new_requests();
    drop_abandoned_requests();
    publish_stats();
    if (shutting_down_.load()) {
      if (requests_.empty()) break;
      if (Clock::now() > drain_deadline_) {
        log().warn("drain timeout: failing {} unfinished requests", requests_.size());
        close_all(Error(ErrorCode::kUnavailable, "the server shut down before the request "
                                                 "finished"));
        break;
      }
    }
    if (!scheduler_.has_work()) {
      idle_wait();
      continue;
    }
    run_step();
  }
  StepInput stop;
  stop.stop = true;
  broadcast_step(comm_, stop);
}

namespace {

// Fault injection for the end-to-end tests: TPSERVE_FAULT_EXIT_RANK=r with
// TPSERVE_FAULT_EXIT_AFTER_STEPS=k makes rank r die by SIGKILL after k steps (heartbeats are not
// steps), as a crashed process or the OOM killer would (with TPSERVE_FAULT_HANG=1 it hangs
// instead, as a stuck driver would); TPSERVE_FAULT_STEP_DELAY_MS=d makes every other rank take d
// ms longer per step, as a slow device would (so a test can keep a request in flight, whatever the
// machine).
int env_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value == nullptr ? fallback : std::atoi(value);
}

}  // namespace

void Engine::follow(Model& model, parallel::Communicator& comm) {
  const bool doomed = env_int("TPSERVE_FAULT_EXIT_RANK", -1) == comm.rank();
  const int steps_to_live = env_int("TPSERVE_FAULT_EXIT_AFTER_STEPS", 0);
  const int step_delay_ms = env_int("TPSERVE_FAULT_STEP_DELAY_MS", 0);
  const bool hang = env_int("TPSERVE_FAULT_HANG", 0) != 0;
  std::vector<float> logits;
  // Steps with tokens only: heartbeats come whenever rank 0 idles a second, so counting them would
  // move the fault by however long the test took to send its request.
  for (int steps = 0;;) {
    StepInput step;
    broadcast_step(comm, step);
    if (step.stop) return;
    if (step.num_tokens() == 0) continue;  // heartbeat
    if (doomed && steps >= steps_to_live) {
      if (hang) {
        log().warn("fault injection: rank {} hangs (TPSERVE_FAULT_HANG)", comm.rank());
        for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
      }
      log().warn("fault injection: rank {} is killed (TPSERVE_FAULT_EXIT_RANK)", comm.rank());
      log().flush();
      std::raise(SIGKILL);
    }
    ++steps;
    if (step_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(step_delay_ms));
    model.forward(step, logits);
  }
}

}  // namespace tpserve::runtime
