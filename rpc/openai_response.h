// The OpenAI HTTP API's response bodies, built from the engine's request events: whole responses
// (chat.completion, text_completion), stream chunks (chat.completion.chunk), usage, logprobs in
// each endpoint's own shape, and errors ({"error": {message, type, param, code}}) with the HTTP
// status an OpenAI client expects.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

#include "common/error.h"
#include "rpc/openai_request.h"
#include "runtime/engine/request_stream.h"
#include "runtime/tokenizer/tokenizer.h"

namespace tpserve::rpc {

// 400 for what the caller sent (a field named), 429 for a full queue, 503 while draining or after
// a peer failed, 504 past a deadline, 500 for a broken invariant.
int http_status(ErrorCode code);

// {"error": {"message", "type", "param", "code"}}; type follows OpenAI's for the status
// (invalid_request_error, authentication_error, rate_limit_error, ...).
nlohmann::json error_body(int status, const std::string& message, const std::string& param = {});

// An engine or conversion error as the HTTP caller sees it: the gRPC wire's field paths
// ("prompt.chat.messages[1]") in the HTTP request's words ("messages[1]").
std::string http_message(const std::string& message);

class OpenAiResponse {
 public:
  // `tokenizer` may be null (token strings in logprobs are then "token_id:N", as vLLM writes).
  // `prompt_texts`: what echo puts before each prompt's completions.
  OpenAiResponse(bool chat, std::string id, std::string model, const OpenAiOptions& options,
                 const runtime::Tokenizer* tokenizer, std::vector<std::string> prompt_texts, int n);

  // Streaming: the chunks that open each choice (chat: the assistant role; completions with echo:
  // the prompt text).
  std::vector<nlohmann::json> opening_chunks() const;
  // An event of prompt `prompt`'s request: streaming chunks for it (none for a delta with nothing
  // to say); the event is also folded into the whole response.
  std::vector<nlohmann::json> add(int prompt, const runtime::RequestEvent& event);
  // The last streaming chunk when include_usage: no choices, the usage of every prompt.
  nlohmann::json usage_chunk() const;
  // The whole response (not streaming).
  nlohmann::json whole() const;

 private:
  struct ChoiceState {
    std::string text;
    std::string finish_reason;
    nlohmann::json logprobs;  // null unless asked for
  };
  nlohmann::json envelope(const char* object) const;
  nlohmann::json usage() const;
  nlohmann::json logprobs_delta(const runtime::SequenceDelta& delta, size_t text_offset) const;
  static void extend(nlohmann::json& logprobs, const nlohmann::json& more);
  bool has_text(int32_t id) const;
  std::string token_text(int32_t id) const;
  nlohmann::json token_bytes(int32_t id) const;

  bool chat_;
  std::string id_;
  std::string model_;
  int64_t created_;
  OpenAiOptions options_;
  const runtime::Tokenizer* tokenizer_;
  std::vector<std::string> prompt_texts_;
  int n_;
  std::map<int, ChoiceState> choices_;
  int64_t prompt_tokens_ = 0;
  int64_t completion_tokens_ = 0;
};

}  // namespace tpserve::rpc
