#include "rpc/openai_request.h"

#include <cmath>
#include <cstdlib>
#include <limits>

#include "common/error.h"
#include "common/field_table.h"

namespace tpserve::rpc {

namespace {

using nlohmann::json;

// Fields both endpoints read (OpenAI's, then the extras vLLM accepts).
constexpr FieldRule kSamplingFields[] = {
    {"model", FieldUse::kSupported, "must name the served model (GET /v1/models) when set"},
    {"stream", FieldUse::kSupported, "server-sent events"},
    {"stream_options", FieldUse::kSupported, "include_usage"},
    {"n", FieldUse::kSupported, "sequences per prompt"},
    {"temperature", FieldUse::kSupported, "SamplingParams.temperature"},
    {"top_p", FieldUse::kSupported, "SamplingParams.top_p"},
    {"max_tokens", FieldUse::kSupported, "SamplingParams.max_tokens"},
    {"stop", FieldUse::kSupported, "stop strings"},
    {"seed", FieldUse::kSupported, "SamplingParams.seed"},
    {"presence_penalty", FieldUse::kSupported, "SamplingParams.presence_penalty"},
    {"frequency_penalty", FieldUse::kSupported, "SamplingParams.frequency_penalty"},
    {"top_k", FieldUse::kSupported, "vLLM extra"},
    {"min_p", FieldUse::kSupported, "vLLM extra"},
    {"repetition_penalty", FieldUse::kSupported, "vLLM extra"},
    {"ignore_eos", FieldUse::kSupported, "vLLM extra"},
    {"stop_token_ids", FieldUse::kSupported, "vLLM extra"},
    {"return_tokens_as_token_ids", FieldUse::kSupported, "vLLM extra: logprob tokens as ids"},
    {"priority", FieldUse::kSupported, "vLLM extra: lower is scheduled first (gRPC: -priority)"},
    {"user", FieldUse::kHarmless, "an end-user id for the caller's own logs"},
    {"metadata", FieldUse::kHarmless, "the caller's own tags"},
    {"store", FieldUse::kHarmless, "OpenAI-side storage; nothing is stored"},
    {"service_tier", FieldUse::kHarmless, "OpenAI's processing tiers"},
    {"spaces_between_special_tokens", FieldUse::kHarmless, "vLLM detokenizer option"},
    {"logit_bias", FieldUse::kSupported, "token id (a string key) -> bias in [-100, 100]"},
    {"use_beam_search", FieldUse::kRefused, "tpserve samples; it does not run beam search"},
    {"best_of", FieldUse::kRefused, "only best_of = n (ask for n sequences instead)", "1"},
    {"min_tokens", FieldUse::kRefused, "no minimum length is enforced"},
    {"length_penalty", FieldUse::kRefused, "a beam-search option", "1"},
    {"include_stop_str_in_output", FieldUse::kRefused, "stop strings are always cut"},
    {"skip_special_tokens", FieldUse::kRefused, "special tokens are always kept in the text",
     "false"},
    {"prompt_logprobs", FieldUse::kRefused, "logprobs of the prompt are not computed"},
    {"guided_json", FieldUse::kRefused, "no guided decoding"},
    {"guided_regex", FieldUse::kRefused, "no guided decoding"},
    {"guided_choice", FieldUse::kRefused, "no guided decoding"},
    {"guided_grammar", FieldUse::kRefused, "no guided decoding"},
    {"structured_outputs", FieldUse::kRefused, "no guided decoding"},
    {"lora_request", FieldUse::kRefused, "adapters are merged at load (serve --lora)"},
};

constexpr FieldRule kChatFields[] = {
    {"messages", FieldUse::kSupported, "rendered with the model's chat template"},
    {"max_completion_tokens", FieldUse::kSupported, "OpenAI's newer name for max_tokens"},
    {"logprobs", FieldUse::kSupported, "the sampled token's logprob"},
    {"top_logprobs", FieldUse::kSupported, "alternatives per token"},
    {"add_generation_prompt", FieldUse::kRefused, "the assistant's turn is always opened", "true"},
    {"tools", FieldUse::kRefused, "no tool calling"},
    {"tool_choice", FieldUse::kRefused, "no tool calling", "\"none\""},
    {"parallel_tool_calls", FieldUse::kHarmless, "there are no tool calls to run in parallel"},
    {"functions", FieldUse::kRefused, "no function calling"},
    {"function_call", FieldUse::kRefused, "no function calling", "\"none\""},
    {"response_format", FieldUse::kRefused, "only {\"type\": \"text\"}", "{\"type\": \"text\"}"},
    {"modalities", FieldUse::kRefused, "text only", "[\"text\"]"},
    {"audio", FieldUse::kRefused, "text only"},
    {"prediction", FieldUse::kRefused, "no predicted outputs"},
    {"reasoning_effort", FieldUse::kRefused, "no reasoning controls"},
    {"web_search_options", FieldUse::kRefused, "no web search"},
    {"echo", FieldUse::kRefused, "chat does not echo the conversation"},
    {"continue_final_message", FieldUse::kRefused, "the assistant's turn is always opened anew"},
    {"chat_template", FieldUse::kRefused, "the server's template is fixed (serve --chat-template)"},
    {"chat_template_kwargs", FieldUse::kRefused, "the template gets only the messages"},
    {"documents", FieldUse::kRefused, "no retrieval documents in the template"},
};

constexpr FieldRule kCompletionFields[] = {
    {"prompt", FieldUse::kSupported, "a string, a list of strings, token ids or lists of them"},
    {"logprobs", FieldUse::kSupported, "alternatives per token"},
    {"echo", FieldUse::kSupported, "the prompt before the completion"},
    {"suffix", FieldUse::kRefused, "no insertion (fill in the middle)"},
};

constexpr FieldRule kMessageFields[] = {
    {"role", FieldUse::kSupported, "system, user or assistant"},
    {"content", FieldUse::kSupported, "a string or a list of text parts"},
    {"name", FieldUse::kRefused, "participant names are not passed to the template"},
    {"tool_calls", FieldUse::kRefused, "no tool calling", "[]"},
    {"tool_call_id", FieldUse::kRefused, "no tool calling"},
    {"function_call", FieldUse::kRefused, "no function calling"},
    {"refusal", FieldUse::kHarmless, "an earlier reply's refusal text is not re-sent"},
};

constexpr FieldRule kStreamOptionFields[] = {
    {"include_usage", FieldUse::kSupported, "a last chunk with usage"},
    {"continuous_usage_stats", FieldUse::kRefused, "usage comes in the last chunk only"},
};

[[noreturn]] void bad(const std::string& field, const std::string& what) {
  raise(ErrorCode::kInvalidArgument, "{}: {}", field, what);
}

const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

std::optional<double> number(const json& body, const char* name) {
  const json* value = field(body, name);
  if (value == nullptr) return std::nullopt;
  if (!value->is_number()) bad(name, "expected a number, got " + value->dump());
  return value->get<double>();
}

// A float field: a value beyond float's range becomes inf, which validation names.
std::optional<float> real(const json& body, const char* name) {
  auto value = number(body, name);
  if (!value) return std::nullopt;
  return static_cast<float>(*value);
}

std::optional<int64_t> integer(const json& body, const char* name, int64_t low, int64_t high) {
  const json* value = field(body, name);
  if (value == nullptr) return std::nullopt;
  if (!value->is_number_integer()) bad(name, "expected an integer, got " + value->dump());
  if (value->is_number_unsigned() && value->get<uint64_t>() > static_cast<uint64_t>(high)) {
    bad(name, fmt::format("{} is out of range [{}, {}]", value->dump(), low, high));
  }
  const int64_t v = value->get<int64_t>();
  if (v < low || v > high) bad(name, fmt::format("{} is out of range [{}, {}]", v, low, high));
  return v;
}

bool boolean(const json& body, const char* name) {
  const json* value = field(body, name);
  if (value == nullptr) return false;
  if (!value->is_boolean()) bad(name, "expected true or false, got " + value->dump());
  return value->get<bool>();
}

std::string text(const json& value, const std::string& name) {
  if (!value.is_string()) bad(name, "expected a string, got " + value.dump());
  return value.get<std::string>();
}

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

// A token id as the engine's int32: beyond that range it is outside the vocabulary too, so it is
// clamped to a value the engine's validation refuses with the vocabulary's size.
int32_t token_id(const json& id) {
  if (id.is_number_unsigned()) return static_cast<int32_t>(std::min<uint64_t>(id.get<uint64_t>(), kInt32Max));
  return static_cast<int32_t>(std::clamp<int64_t>(id.get<int64_t>(), -1, kInt32Max));
}

void read_sampling(const json& body, v1::SamplingParams& wire) {
  if (auto v = real(body, "temperature")) wire.set_temperature(*v);
  if (auto v = real(body, "top_p")) wire.set_top_p(*v);
  if (auto v = real(body, "min_p")) wire.set_min_p(*v);
  if (auto v = real(body, "repetition_penalty")) wire.set_repetition_penalty(*v);
  if (auto v = real(body, "presence_penalty")) wire.set_presence_penalty(*v);
  if (auto v = real(body, "frequency_penalty")) wire.set_frequency_penalty(*v);
  // Negative or oversized values reach the engine's validation, which names them.
  if (auto v = integer(body, "top_k", -1, kInt32Max)) wire.set_top_k(*v == -1 ? 0 : *v);  // vLLM: -1 = off
  if (auto v = integer(body, "n", INT32_MIN, kInt32Max)) wire.set_n(*v);
  if (auto v = integer(body, "max_tokens", INT32_MIN, kInt32Max)) wire.set_max_tokens(*v);
  if (const json* seed = field(body, "seed")) {
    // OpenAI's seed is any integer; the engine's is 64 bits: a negative one wraps.
    if (!seed->is_number_integer()) bad("seed", "expected an integer, got " + seed->dump());
    wire.set_seed(seed->is_number_unsigned() ? seed->get<uint64_t>()
                                             : static_cast<uint64_t>(seed->get<int64_t>()));
  }
  if (const json* stop = field(body, "stop")) {
    if (stop->is_string()) {
      wire.add_stop(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (size_t i = 0; i < stop->size(); ++i) {
        wire.add_stop(text((*stop)[i], fmt::format("stop[{}]", i)));
      }
    } else {
      bad("stop", "expected a string or a list of strings, got " + stop->dump());
    }
  }
  if (const json* ids = field(body, "stop_token_ids")) {
    if (!ids->is_array()) bad("stop_token_ids", "expected a list of token ids");
    for (size_t i = 0; i < ids->size(); ++i) {
      const json& id = (*ids)[i];
      if (!id.is_number_integer()) bad(fmt::format("stop_token_ids[{}]", i), "expected a token id");
      wire.add_stop_token_ids(token_id(id));
    }
  }
  wire.set_ignore_eos(boolean(body, "ignore_eos"));
  if (const json* biases = field(body, "logit_bias")) {
    // OpenAI's keys are token ids written as strings (JSON keys are strings).
    if (!biases->is_object()) bad("logit_bias", "expected an object of token id -> bias");
    for (const auto& [key, value] : biases->items()) {
      const std::string name = fmt::format("logit_bias[\"{}\"]", key);
      char* end = nullptr;
      const long long id = std::strtoll(key.c_str(), &end, 10);
      if (key.empty() || *end != '\0') bad(name, "the key must be a token id");
      if (!value.is_number()) bad(name, "expected a number, got " + value.dump());
      (*wire.mutable_logit_bias())[static_cast<int32_t>(std::clamp<long long>(id, -1, kInt32Max))] =
          value.get<float>();
    }
  }
}

void read_common(const json& body, OpenAiOptions& options) {
  if (const json* model = field(body, "model")) options.model = text(*model, "model");
  options.stream = boolean(body, "stream");
  options.tokens_as_ids = boolean(body, "return_tokens_as_token_ids");
  if (const json* stream_options = field(body, "stream_options")) {
    if (!stream_options->is_object()) bad("stream_options", "expected an object");
    check_fields(*stream_options, "request", {kStreamOptionFields}, "stream_options.");
    options.include_usage = boolean(*stream_options, "include_usage");
  }
}

json require_object(const json& body) {
  if (!body.is_object()) bad("body", "expected a JSON object");
  return body;
}

// A message's content: a string, or OpenAI's list of parts, of which tpserve takes text parts
// joined with "\n" (vLLM's "string" content format).
std::string message_content(const json& content, const std::string& name) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad(name, "expected a string or a list of text parts");
  std::string joined;
  for (size_t i = 0; i < content.size(); ++i) {
    const std::string part_name = fmt::format("{}[{}]", name, i);
    const json& part = content[i];
    if (!part.is_object()) bad(part_name, "expected {\"type\": \"text\", \"text\": ...}");
    const json* type = field(part, "type");
    if (type == nullptr || *type != "text") {
      raise(ErrorCode::kUnimplemented, "{}.type: {} is not supported: text parts only", part_name,
            type == nullptr ? "null" : type->dump());
    }
    const json* part_text = field(part, "text");
    if (part_text == nullptr) bad(part_name + ".text", "missing");
    if (i > 0) joined += '\n';
    joined += text(*part_text, part_name + ".text");
  }
  return joined;
}

}  // namespace

// vLLM's `priority`: a lower value is scheduled first; the engine's (gRPC) priority is the other
// way round, so the value is negated.
int32_t engine_priority(const json& body) {
  const auto value = integer(body, "priority", -kInt32Max, kInt32Max);
  return value ? static_cast<int32_t>(-*value) : 0;
}

OpenAiRequest read_chat_request(const json& raw) {
  const json body = require_object(raw);
  check_fields(body, "request", {kSamplingFields, kChatFields});
  OpenAiRequest request;
  read_common(body, request.options);
  v1::GenerateRequest wire;
  const json* messages = field(body, "messages");
  if (messages == nullptr) bad("messages", "missing");
  if (!messages->is_array()) bad("messages", "expected a list of messages");
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& message = (*messages)[i];
    const std::string name = fmt::format("messages[{}]", i);
    if (!message.is_object()) bad(name, "expected an object with role and content");
    check_fields(message, "request", {kMessageFields}, name + ".");
    v1::ChatMessage* out = wire.mutable_chat()->add_messages();
    const json* role = field(message, "role");
    if (role == nullptr) bad(name + ".role", "missing");
    out->set_role(text(*role, name + ".role"));
    const json* content = field(message, "content");
    if (content == nullptr) bad(name + ".content", "missing");
    out->set_content(message_content(*content, name + ".content"));
  }
  if (!wire.has_chat()) wire.mutable_chat();  // an empty list: the conversion names it
  read_sampling(body, *wire.mutable_sampling());
  wire.set_priority(engine_priority(body));
  // max_completion_tokens is OpenAI's newer name; when both are sent it wins, as in vLLM.
  if (auto v = integer(body, "max_completion_tokens", INT32_MIN, kInt32Max)) {
    wire.mutable_sampling()->set_max_tokens(*v);
  }
  OpenAiOptions& options = request.options;
  options.max_tokens_set = wire.sampling().has_max_tokens();
  options.logprobs = boolean(body, "logprobs");
  // Above the engine's limit, its validation names the limit.
  if (auto top = integer(body, "top_logprobs", 0, kInt32Max)) {
    if (!options.logprobs) bad("top_logprobs", "needs logprobs: true");
    options.top_logprobs = static_cast<int>(*top);
  }
  // The engine reports the sampled token's logprob with its alternatives: ask for at least one.
  if (options.logprobs) wire.mutable_sampling()->set_logprobs(std::max(1, options.top_logprobs));
  request.prompts.push_back(std::move(wire));
  return request;
}

OpenAiRequest read_completion_request(const json& raw) {
  const json body = require_object(raw);
  check_fields(body, "request", {kSamplingFields, kCompletionFields});
  OpenAiRequest request;
  read_common(body, request.options);
  OpenAiOptions& options = request.options;
  options.max_tokens_set = true;  // OpenAI's completions default is 16, the engine's
  options.echo = boolean(body, "echo");
  if (auto top = integer(body, "logprobs", 0, kInt32Max)) {
    options.logprobs = true;
    options.top_logprobs = static_cast<int>(*top);
  }
  if (options.echo && options.logprobs) {
    raise(ErrorCode::kUnimplemented, "echo: with logprobs is not supported: the prompt's own "
          "logprobs are not computed");
  }
  v1::SamplingParams sampling;
  read_sampling(body, sampling);
  if (options.logprobs) sampling.set_logprobs(std::max(1, options.top_logprobs));
  const int32_t priority = engine_priority(body);
  const json* prompt = field(body, "prompt");
  if (prompt == nullptr) bad("prompt", "missing");
  auto add_text = [&](const json& value, const std::string& name) {
    v1::GenerateRequest& wire = request.prompts.emplace_back();
    wire.set_text(text(value, name));
    *wire.mutable_sampling() = sampling;
    wire.set_priority(priority);
  };
  auto add_ids = [&](const json& value, const std::string& name) {
    v1::GenerateRequest& wire = request.prompts.emplace_back();
    wire.mutable_token_ids();
    for (size_t i = 0; i < value.size(); ++i) {
      const json& id = value[i];
      if (!id.is_number_integer()) bad(fmt::format("{}[{}]", name, i), "expected a token id");
      wire.mutable_token_ids()->add_ids(token_id(id));
    }
    *wire.mutable_sampling() = sampling;
    wire.set_priority(priority);
  };
  // OpenAI: a string, a list of strings, a list of token ids, or a list of such lists.
  if (prompt->is_string()) {
    add_text(*prompt, "prompt");
  } else if (prompt->is_array() && !prompt->empty() && (*prompt)[0].is_number()) {
    add_ids(*prompt, "prompt");
  } else if (prompt->is_array() && !prompt->empty()) {
    for (size_t i = 0; i < prompt->size(); ++i) {
      const json& item = (*prompt)[i];
      const std::string name = fmt::format("prompt[{}]", i);
      if (item.is_array()) {
        add_ids(item, name);
      } else {
        add_text(item, name);
      }
    }
  } else {
    bad("prompt", "expected a string, a list of strings or a list of token ids");
  }
  return request;
}

std::string field_of_message(const std::string& message) {
  // check_fields: "request: field 'stream_options.x': ..."
  constexpr std::string_view kRefused = "request: field '";
  if (message.starts_with(kRefused)) {
    const size_t end = message.find_first_of("'.[", kRefused.size());
    return message.substr(kRefused.size(), end - kRefused.size());
  }
  size_t end = 0;
  while (end < message.size() && (std::isalnum(static_cast<unsigned char>(message[end])) ||
                                  message[end] == '_')) {
    ++end;
  }
  if (end == 0) return {};
  const std::string word = message.substr(0, end);
  for (FieldTable table : {FieldTable(kSamplingFields), FieldTable(kChatFields),
                           FieldTable(kCompletionFields)}) {
    for (const FieldRule& rule : table) {
      if (rule.name == word) return word;
    }
  }
  return {};
}

}  // namespace tpserve::rpc
