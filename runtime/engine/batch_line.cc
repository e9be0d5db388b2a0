#include "runtime/engine/batch_line.h"

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/json_brief.h"

namespace tpserve::runtime {
namespace {

using Json = nlohmann::json;

// A field of one line that is not what it should be; caught in parse_batch_line.
struct LineError {
  std::string message;
};

template <typename... Args>
[[noreturn]] void line_error(fmt::format_string<Args...> format, Args&&... args) {
  throw LineError{fmt::format(format, std::forward<Args>(args)...)};
}

double number_field(const Json& value, const char* name) {
  if (!value.is_number()) line_error("{}: expected a number, got {}", name, json_brief(value));
  return value.get<double>();
}

int64_t integer_field(const Json& value, const char* name) {
  if (!value.is_number_integer()) line_error("{}: expected an integer, got {}", name, json_brief(value));
  return value.get<int64_t>();
}

int32_t int32_field(const Json& value, const char* name) {
  const int64_t v = integer_field(value, name);
  if (v < INT32_MIN || v > INT32_MAX) line_error("{}: {} is out of range", name, v);
  return static_cast<int32_t>(v);
}

std::vector<int32_t> int32_list(const Json& value, const char* name) {
  if (!value.is_array()) line_error("{}: expected a list of integers", name);
  std::vector<int32_t> out;
  for (size_t i = 0; i < value.size(); ++i) {
    out.push_back(int32_field(value[i], fmt::format("{}[{}]", name, i).c_str()));
  }
  return out;
}

std::string string_field(const Json& value, const char* name) {
  if (!value.is_string()) line_error("{}: expected a string, got {}", name, json_brief(value));
  return value.get<std::string>();
}

std::vector<int32_t> encode_text(const BatchContext& context, const std::string& text, bool special,
                                 const char* field) {
  if (context.tokenizer == nullptr) {
    line_error("{}: the model directory has no tokenizer; use prompt_ids", field);
  }
  try {
    return context.tokenizer->encode(text, special);
  } catch (const Error& e) {
    line_error("{}: {}", field, e.what());
  }
}

std::vector<int32_t> encode_messages(const BatchContext& context, const Json& value) {
  if (!value.is_array() || value.empty()) line_error("messages: expected a non-empty list");
  if (context.chat_template == nullptr) line_error("messages: the model has no chat template");
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < value.size(); ++i) {
    const Json& m = value[i];
    const std::string field = fmt::format("messages[{}]", i);
    if (!m.is_object() || !m.contains("role") || !m.contains("content")) {
      line_error("{}: expected {{\"role\": ..., \"content\": ...}}", field);
    }
    messages.push_back({string_field(m["role"], (field + ".role").c_str()),
                        string_field(m["content"], (field + ".content").c_str())});
  }
  std::string text;
  try {
    text = apply_chat_template(*context.chat_template, messages);
  } catch (const Error& e) {
    line_error("messages: {}", e.what());
  }
  // The rendered text already carries the template's BOS and role tokens.
  return encode_text(context, text, false, "messages");
}

void apply_sampling_field(const std::string& key, const Json& value, SamplingParams& p) {
  const char* k = key.c_str();
  if (key == "temperature") p.temperature = static_cast<float>(number_field(value, k));
  else if (key == "top_k") p.top_k = int32_field(value, k);
  else if (key == "top_p") p.top_p = static_cast<float>(number_field(value, k));
  else if (key == "min_p") p.min_p = static_cast<float>(number_field(value, k));
  else if (key == "repetition_penalty") p.repetition_penalty = static_cast<float>(number_field(value, k));
  else if (key == "presence_penalty") p.presence_penalty = static_cast<float>(number_field(value, k));
  else if (key == "frequency_penalty") p.frequency_penalty = static_cast<float>(number_field(value, k));
  else if (key == "seed") {
    const int64_t seed = integer_field(value, k);
    if (seed < 0) line_error("seed: {} is negative", seed);
    p.seed = static_cast<uint64_t>(seed);
  } else if (key == "stop") {
    p.stop.clear();
    if (value.is_string()) {
      p.stop.push_back(value.get<std::string>());
    } else if (value.is_array()) {
      for (size_t i = 0; i < value.size(); ++i) {
        p.stop.push_back(string_field(value[i], fmt::format("stop[{}]", i).c_str()));
      }
    } else {
      line_error("stop: expected a string or a list of strings");
    }
  } else if (key == "stop_token_ids") p.stop_token_ids = int32_list(value, k);
  else if (key == "max_tokens") p.max_tokens = int32_field(value, k);
  else if (key == "ignore_eos") {
    if (!value.is_boolean()) line_error("ignore_eos: expected true or false");
    p.ignore_eos = value.get<bool>();
  } else if (key == "n") p.n = int32_field(value, k);
  else if (key == "logprobs") p.logprobs = int32_field(value, k);
  else line_error("unknown field '{}'", key);
}

std::string id_of(const Json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_integer()) return std::to_string(value.get<int64_t>());
  line_error("id: expected a string or an integer, got {}", json_brief(value));
}

}  // namespace

BatchItem parse_batch_line(std::string_view line, int64_t line_number, const BatchContext& context) {
  BatchItem item;
  item.line = line_number;
  item.request.params = context.defaults;
  try {
    const Json root = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (root.is_discarded()) line_error("not valid JSON");
    if (!root.is_object()) line_error("expected a JSON object, got {}", root.type_name());
    if (!root.contains("id")) line_error("id: missing");
    item.id = id_of(root["id"]);
    item.id_is_number = root["id"].is_number_integer();
    if (item.id.empty()) line_error("id: empty");
    const int prompts = static_cast<int>(root.contains("prompt") + root.contains("messages") +
                                         root.contains("prompt_ids"));
    if (prompts != 1) line_error("expected exactly one of prompt, messages or prompt_ids, got {}", prompts);
    for (const auto& [key, value] : root.items()) {
      if (key == "id") continue;
      if (key == "prompt") {
        const std::string text = string_field(value, "prompt");
        if (text.empty()) line_error("prompt: empty");
        item.request.prompt_ids = encode_text(context, text, true, "prompt");
      } else if (key == "messages") {
        item.request.prompt_ids = encode_messages(context, value);
      } else if (key == "prompt_ids") {
        item.request.prompt_ids = int32_list(value, "prompt_ids");
        if (item.request.prompt_ids.empty()) line_error("prompt_ids: empty");
      } else {
        apply_sampling_field(key, value, item.request.params);
      }
    }
  } catch (const LineError& e) {
    item.error = e.message;
  }
  return item;
}

}  // namespace tpserve::runtime
