// One OpenAI API call in flight: the engine requests it became (one per prompt of a completions
// list) and the response being built from their events. The HTTP handler (or, when streaming, the
// chunk writer that outlives it) owns it; dropping it cancels whatever has not finished, which is
// how a client that goes away frees its KV blocks.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rpc/openai_response.h"
#include "runtime/engine/request_stream.h"

namespace tpserve::rpc {

class OpenAiJob {
 public:
  OpenAiJob(std::vector<std::shared_ptr<runtime::RequestStream>> streams,
            std::unique_ptr<OpenAiResponse> response);
  ~OpenAiJob();

  struct Event {
    int prompt = 0;
    runtime::RequestEvent event;
  };
  // The next event of any prompt, or nullopt if none came within `timeout`.
  std::optional<Event> next(std::chrono::milliseconds timeout);
  bool finished() const;
  void cancel();

  OpenAiResponse& response() { return *response_; }

  // The body of a non-streaming call: waits for every prompt; an engine error gives its status.
  int wait_whole(std::string& body);

 private:
  std::vector<std::shared_ptr<runtime::RequestStream>> streams_;
  std::vector<bool> done_;
  size_t next_ = 0;  // round robin over the prompts
  std::unique_ptr<OpenAiResponse> response_;
};

// One server-sent event: "data: <json>\n\n".
std::string sse_event(const nlohmann::json& chunk);

}  // namespace tpserve::rpc
