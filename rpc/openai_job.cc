#include "rpc/openai_job.h"

namespace tpserve::rpc {

namespace {

// With several prompts the job waits on each in turn this long, so a ready one is not held up
// behind a slow one by more than this. One prompt (the usual case) waits on its stream directly.
constexpr auto kRoundRobinWait = std::chrono::milliseconds(2);

}  // namespace

OpenAiJob::OpenAiJob(std::vector<std::shared_ptr<runtime::RequestStream>> streams,
                     std::unique_ptr<OpenAiResponse> response)
    : streams_(std::move(streams)), done_(streams_.size(), false), response_(std::move(response)) {}

OpenAiJob::~OpenAiJob() { cancel(); }

void OpenAiJob::cancel() {
  for (size_t p = 0; p < streams_.size(); ++p) {
    if (!done_[p]) streams_[p]->cancel();
  }
}

bool OpenAiJob::finished() const {
  for (bool done : done_) {
    if (!done) return false;
  }
  return true;
}

std::optional<OpenAiJob::Event> OpenAiJob::next(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const bool single = streams_.size() == 1;
  do {
    for (size_t tried = 0; tried < streams_.size(); ++tried) {
      const size_t p = next_;
      next_ = (next_ + 1) % streams_.size();
      if (done_[p]) continue;
      auto event = streams_[p]->pop(single ? timeout : kRoundRobinWait);
      if (!event) continue;
      if (event->done || event->error) done_[p] = true;
      return Event{static_cast<int>(p), std::move(*event)};
    }
  } while (!single && !finished() && std::chrono::steady_clock::now() < deadline);
  return std::nullopt;
}

int OpenAiJob::wait_whole(std::string& body) {
  while (!finished()) {
    auto next_event = next(std::chrono::milliseconds(200));
    if (!next_event) continue;
    if (next_event->event.error) {
      const Error& error = *next_event->event.error;
      const int status = http_status(error.code());
      body = error_body(status, http_message(error.what())).dump();
      return status;
    }
    response_->add(next_event->prompt, next_event->event);
  }
  body = response_->whole().dump();
  return 200;
}

std::string sse_event(const nlohmann::json& chunk) {
  // Invalid UTF-8 cannot reach here (the engine's text is repaired), but never throw mid-stream.
  return "data: " + chunk.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n\n";
}

}  // namespace tpserve::rpc
