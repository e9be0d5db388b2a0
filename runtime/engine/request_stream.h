// What a generation request sees of the engine: a thread-safe queue of events. The engine (rank
// 0's main thread) pushes; the front end's handler thread pops, waiting. Closing from either side
// is final: the consumer closes when its client goes away, the engine when the request is done.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"

namespace tpserve::runtime {

enum class FinishReason { kNone, kStop, kLength, kCancelled, kDeadline };

const char* finish_reason_name(FinishReason reason);

struct TokenLogprob {
  int32_t token_id = 0;
  float logprob = 0;
};

// New output of one of the request's n sequences.
struct SequenceDelta {
  int32_t index = 0;                         // which of the n sequences
  std::vector<int32_t> token_ids;            // tokens generated since the last delta
  std::string text;                          // their text (stop strings held back / cut)
  std::vector<float> logprobs;               // per token, when asked for
  std::vector<std::vector<TokenLogprob>> top_logprobs;
  FinishReason finish_reason = FinishReason::kNone;  // set on the sequence's last delta
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

struct RequestEvent {
  std::vector<SequenceDelta> deltas;
  bool done = false;                  // the request is over (all sequences finished)
  std::optional<Error> error;         // the request failed (engine shut down, ...)
  Usage usage;                        // filled on the last event
};

class RequestStream {
 public:
  explicit RequestStream(uint64_t id) : id_(id) {}

  uint64_t id() const { return id_; }

  void push(RequestEvent event);
  // Next event, or nullopt on timeout. After the `done` event, returns nullopt at once.
  std::optional<RequestEvent> pop(std::chrono::milliseconds timeout);

  // The consumer is gone (client cancelled, deadline, disconnect): the engine drops the request.
  void cancel();
  bool cancelled() const;

 private:
  const uint64_t id_;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<RequestEvent> events_;
  bool finished_ = false;
  bool cancelled_ = false;
};

}  // namespace tpserve::runtime
