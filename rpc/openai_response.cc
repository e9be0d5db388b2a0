#include "rpc/openai_response.h"

#include <chrono>

namespace tpserve::rpc {

using nlohmann::json;

int http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kOutOfRange:
    case ErrorCode::kUnimplemented: return 400;
    case ErrorCode::kNotFound: return 404;
    case ErrorCode::kResourceExhausted: return 429;
    case ErrorCode::kUnavailable: return 503;
    case ErrorCode::kDeadlineExceeded: return 504;
    case ErrorCode::kDataLoss:
    case ErrorCode::kInternal: return 500;
  }
  return 500;
}

json error_body(int status, const std::string& message, const std::string& param) {
  const char* type = "invalid_request_error";
  const char* code = nullptr;
  switch (status) {
    case 401: type = "authentication_error"; code = "invalid_api_key"; break;
    case 404: type = "not_found_error"; break;
    case 413: type = "invalid_request_error"; code = "request_too_large"; break;
    case 429: type = "rate_limit_error"; code = "rate_limit_exceeded"; break;
    case 503: type = "service_unavailable_error"; break;
    case 504: type = "timeout_error"; break;
    default: if (status >= 500) type = "server_error"; break;
  }
  return {{"error", {{"message", message}, {"type", type},
                     {"param", param.empty() ? json(nullptr) : json(param)},
                     {"code", code == nullptr ? json(nullptr) : json(code)}}}};
}

std::string http_message(const std::string& message) {
  std::string out = message;
  // Longest first: "prompt.text" must not leave ".text" behind "prompt".
  for (const auto& [wire, http] : {std::pair{"prompt.chat.", ""}, std::pair{"prompt.text", "prompt"},
                                   std::pair{"prompt.token_ids", "prompt"},
                                   std::pair{"prompt_ids", "prompt"}}) {
    for (size_t at = out.find(wire); at != std::string::npos; at = out.find(wire, at)) {
      out.replace(at, std::string_view(wire).size(), http);
      at += std::string_view(http).size();
    }
  }
  return out;
}

OpenAiResponse::OpenAiResponse(bool chat, std::string id, std::string model,
                               const OpenAiOptions& options, const runtime::Tokenizer* tokenizer,
                               std::vector<std::string> prompt_texts, int n)
    : chat_(chat),
      id_(std::move(id)),
      model_(std::move(model)),
      created_(std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count()),
      options_(options),
      tokenizer_(tokenizer),
      prompt_texts_(std::move(prompt_texts)),
      n_(n) {
  for (int p = 0; p < static_cast<int>(prompt_texts_.size()); ++p) {
    for (int i = 0; i < n_; ++i) {
      ChoiceState& choice = choices_[p * n_ + i];
      if (options_.echo) choice.text = prompt_texts_[p];
    }
  }
}

json OpenAiResponse::envelope(const char* object) const {
  return {{"id", id_}, {"object", object}, {"created", created_}, {"model", model_}};
}

json OpenAiResponse::usage() const {
  return {{"prompt_tokens", prompt_tokens_}, {"completion_tokens", completion_tokens_},
          {"total_tokens", prompt_tokens_ + completion_tokens_}};
}

// The model's vocabulary can be wider than the tokenizer's (padded embedding rows): such an id
// has no text, and is written by its number, as vLLM writes every id with
// return_tokens_as_token_ids.
bool OpenAiResponse::has_text(int32_t id) const {
  return tokenizer_ != nullptr && id >= 0 && id < tokenizer_->vocab_size();
}

std::string OpenAiResponse::token_text(int32_t id) const {
  if (!has_text(id) || options_.tokens_as_ids) return fmt::format("token_id:{}", id);
  return tokenizer_->decode(std::span<const int32_t>(&id, 1));
}

json OpenAiResponse::token_bytes(int32_t id) const {
  if (!has_text(id)) return nullptr;
  runtime::DecodeState state;
  std::string raw;
  tokenizer_->append_token_bytes(id, false, state, raw);
  json bytes = json::array();
  for (unsigned char c : raw) bytes.push_back(c);
  return bytes;
}

// Chat: {"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}.
// Completions: {tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset}.
json OpenAiResponse::logprobs_delta(const runtime::SequenceDelta& delta, size_t text_offset) const {
  const size_t top = static_cast<size_t>(options_.top_logprobs);
  if (chat_) {
    json content = json::array();
    for (size_t t = 0; t < delta.token_ids.size() && t < delta.logprobs.size(); ++t) {
      json alternatives = json::array();
      if (t < delta.top_logprobs.size()) {
        for (size_t a = 0; a < delta.top_logprobs[t].size() && a < top; ++a) {
          const runtime::TokenLogprob& alt = delta.top_logprobs[t][a];
          alternatives.push_back({{"token", token_text(alt.token_id)}, {"logprob", alt.logprob},
                                  {"bytes", token_bytes(alt.token_id)}});
        }
      }
      const int32_t id = delta.token_ids[t];
      content.push_back({{"token", token_text(id)}, {"logprob", delta.logprobs[t]},
                         {"bytes", token_bytes(id)}, {"top_logprobs", alternatives}});
    }
    return {{"content", content}};
  }
  json out = {{"tokens", json::array()}, {"token_logprobs", json::array()},
              {"top_logprobs", json::array()}, {"text_offset", json::array()}};
  size_t offset = text_offset;
  for (size_t t = 0; t < delta.token_ids.size() && t < delta.logprobs.size(); ++t) {
    const std::string token = token_text(delta.token_ids[t]);
    out["tokens"].push_back(token);
    out["token_logprobs"].push_back(delta.logprobs[t]);
    json alternatives = json::object();
    if (t < delta.top_logprobs.size()) {
      for (size_t a = 0; a < delta.top_logprobs[t].size() && a < top; ++a) {
        const runtime::TokenLogprob& alt = delta.top_logprobs[t][a];
        alternatives[token_text(alt.token_id)] = alt.logprob;
      }
    }
    out["top_logprobs"].push_back(alternatives);
    out["text_offset"].push_back(offset);
    offset += token.size();
  }
  return out;
}

void OpenAiResponse::extend(json& logprobs, const json& more) {
  if (logprobs.is_null()) {
    logprobs = more;
    return;
  }
  for (auto& [key, values] : more.items()) {
    for (const json& value : values) logprobs[key].push_back(value);
  }
}

std::vector<json> OpenAiResponse::opening_chunks() const {
  std::vector<json> chunks;
  for (const auto& [index, choice] : choices_) {
    if (chat_) {
      json chunk = envelope("chat.completion.chunk");
      chunk["choices"] = {{{"index", index}, {"delta", {{"role", "assistant"}, {"content", ""}}},
                           {"logprobs", nullptr}, {"finish_reason", nullptr}}};
      if (options_.include_usage) chunk["usage"] = nullptr;
      chunks.push_back(std::move(chunk));
    } else if (options_.echo) {
      json chunk = envelope("text_completion");
      chunk["choices"] = {{{"index", index}, {"text", choice.text}, {"logprobs", nullptr},
                           {"finish_reason", nullptr}}};
      if (options_.include_usage) chunk["usage"] = nullptr;
      chunks.push_back(std::move(chunk));
    }
  }
  return chunks;
}

std::vector<json> OpenAiResponse::add(int prompt, const runtime::RequestEvent& event) {
  std::vector<json> chunks;
  for (const runtime::SequenceDelta& delta : event.deltas) {
    const int index = prompt * n_ + delta.index;
    ChoiceState& choice = choices_[index];
    json logprobs = nullptr;
    if (options_.logprobs && !delta.token_ids.empty()) {
      logprobs = logprobs_delta(delta, choice.text.size());
      extend(choice.logprobs, logprobs);
    }
    choice.text += delta.text;
    const bool finished = delta.finish_reason != runtime::FinishReason::kNone;
    if (finished) choice.finish_reason = runtime::finish_reason_name(delta.finish_reason);
    if (delta.text.empty() && !finished && logprobs.is_null()) continue;
    json entry = {{"index", index}, {"logprobs", logprobs},
                  {"finish_reason", finished ? json(choice.finish_reason) : json(nullptr)}};
    json chunk;
    if (chat_) {
      entry["delta"] = delta.text.empty() ? json::object() : json{{"content", delta.text}};
      chunk = envelope("chat.completion.chunk");
    } else {
      entry["text"] = delta.text;
      chunk = envelope("text_completion");
    }
    chunk["choices"] = json::array({std::move(entry)});
    if (options_.include_usage) chunk["usage"] = nullptr;
    chunks.push_back(std::move(chunk));
  }
  if (event.done) {
    prompt_tokens_ += event.usage.prompt_tokens;
    completion_tokens_ += event.usage.completion_tokens;
  }
  return chunks;
}

json OpenAiResponse::usage_chunk() const {
  json chunk = envelope(chat_ ? "chat.completion.chunk" : "text_completion");
  chunk["choices"] = json::array();
  chunk["usage"] = usage();
  return chunk;
}

json OpenAiResponse::whole() const {
  json body = envelope(chat_ ? "chat.completion" : "text_completion");
  json choices = json::array();
  for (const auto& [index, choice] : choices_) {
    json entry = {{"index", index}, {"logprobs", choice.logprobs},
                  {"finish_reason", choice.finish_reason}};
    if (options_.logprobs && entry["logprobs"].is_null()) {
      entry["logprobs"] = chat_ ? json{{"content", json::array()}} : json(nullptr);
    }
    if (chat_) {
      entry["message"] = {{"role", "assistant"}, {"content", choice.text}};
    } else {
      entry["text"] = choice.text;
    }
    choices.push_back(std::move(entry));
  }
  body["choices"] = std::move(choices);
  body["usage"] = usage();
  return body;  // the text is the engine's, valid UTF-8
}

}  // namespace tpserve::rpc
