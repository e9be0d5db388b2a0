// The OpenAI HTTP API's request bodies (/v1/chat/completions, /v1/completions), read into the
// gRPC front end's own wire messages, so that both front ends share one conversion (convert.h) and
// the engine's one validation. Every field is in a table (common/field_table.h): read, harmless, or
// refused by name with a 400 (tools, response_format other than text, beam search, ...); a field in
// no table is ignored, as vLLM ignores unknown fields.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "tpserve/v1/generation.pb.h"

namespace tpserve::rpc {

// What the response needs besides the engine's output.
struct OpenAiOptions {
  std::string model;             // as sent (empty: not sent)
  bool stream = false;
  bool include_usage = false;    // stream_options.include_usage
  bool logprobs = false;         // chat: logprobs; completions: logprobs set (0..20)
  int top_logprobs = 0;          // alternatives shown per token
  bool echo = false;             // completions: the prompt before the completion
  bool max_tokens_set = false;   // chat without it: the rest of the context
  bool tokens_as_ids = false;    // vLLM's return_tokens_as_token_ids: logprob tokens "token_id:N"
};

struct OpenAiRequest {
  // One per prompt (chat: one; completions: one per prompt of a list). Each carries the sampling.
  std::vector<v1::GenerateRequest> prompts;
  OpenAiOptions options;
};

// Throw tpserve::Error naming the field (kInvalidArgument for a wrong type or shape,
// kUnimplemented for a refused field).
OpenAiRequest read_chat_request(const nlohmann::json& body);
OpenAiRequest read_completion_request(const nlohmann::json& body);

// The request field an engine or conversion message is about ("temperature must be ..." ->
// "temperature", "prompt.chat.messages[1].role: ..." -> "messages"), or empty.
std::string field_of_message(const std::string& message);

}  // namespace tpserve::rpc
