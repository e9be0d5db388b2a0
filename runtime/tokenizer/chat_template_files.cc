#include "runtime/tokenizer/chat_template_files.h"

#include <fstream>
#include <sstream>

#include "common/error.h"
#include "runtime/tokenizer/model_files.h"

namespace tpserve::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

std::optional<std::string> read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return buffer.str();
}

// tokenizer_config.json's "chat_template": a string, or [{"name": ..., "template": ...}, ...].
std::string template_from_field(const json& field, const fs::path& path) {
  if (field.is_string()) return field.get<std::string>();
  if (field.is_array()) {
    for (const json& entry : field) {
      if (!entry.is_object() || !entry.contains("name") || !entry.contains("template") ||
          !entry["name"].is_string() || !entry["template"].is_string()) {
        raise(ErrorCode::kDataLoss, "{}: chat_template list entries must be {{\"name\": str, \"template\": str}}",
              path.string());
      }
      if (entry["name"] == "default") return entry["template"].get<std::string>();
    }
    raise(ErrorCode::kDataLoss, "{}: chat_template lists named templates but none is \"default\"", path.string());
  }
  raise(ErrorCode::kDataLoss, "{}: chat_template is neither a string nor a list of named templates", path.string());
}

// tokenizer_config.json writes a token either as "text" or as an AddedToken {"content": "text", ...}.
std::optional<std::string> token_text(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content") && value["content"].is_string()) return value["content"].get<std::string>();
  return std::nullopt;
}

void add_special_tokens(const fs::path& path, ordered_json& tokens) {
  if (!fs::is_regular_file(path)) return;
  json config = read_json_file(path);
  if (!config.is_object()) return;
  for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}) {
    if (tokens.contains(key) || !config.contains(key)) continue;
    if (std::optional<std::string> text = token_text(config[key])) tokens[key] = *text;
  }
  if (!tokens.contains("additional_special_tokens") && config.contains("additional_special_tokens") &&
      config["additional_special_tokens"].is_array()) {
    ordered_json list = ordered_json::array();
    for (const json& token : config["additional_special_tokens"]) {
      if (std::optional<std::string> text = token_text(token)) list.push_back(*text);
    }
    tokens["additional_special_tokens"] = std::move(list);
  }
}

}  // namespace

std::optional<ChatTemplateText> find_chat_template(const fs::path& model_dir) {
  const fs::path jinja_file = model_dir / "chat_template.jinja";
  if (fs::is_regular_file(jinja_file)) {
    std::optional<std::string> text = read_text(jinja_file);
    if (!text) raise(ErrorCode::kDataLoss, "{}: cannot be read", jinja_file.string());
    return ChatTemplateText{std::move(*text), jinja_file.string()};
  }
  for (const char* name : {"chat_template.json", "tokenizer_config.json"}) {
    const fs::path path = model_dir / name;
    if (!fs::is_regular_file(path)) continue;
    json config = read_json_file(path);
    if (!config.is_object() || !config.contains("chat_template") || config["chat_template"].is_null()) continue;
    return ChatTemplateText{template_from_field(config["chat_template"], path), path.string()};
  }
  return std::nullopt;
}

ChatTemplateText read_chat_template_file(const fs::path& file) {
  if (!fs::is_regular_file(file)) raise(ErrorCode::kNotFound, "--chat-template {}: no such file", file.string());
  std::optional<std::string> text = read_text(file);
  if (!text) raise(ErrorCode::kNotFound, "--chat-template {}: cannot be read", file.string());
  return ChatTemplateText{std::move(*text), file.string()};
}

ordered_json read_special_tokens(const fs::path& model_dir) {
  ordered_json tokens = ordered_json::object();
  add_special_tokens(model_dir / "tokenizer_config.json", tokens);
  add_special_tokens(model_dir / "special_tokens_map.json", tokens);
  return tokens;
}

}  // namespace tpserve::runtime
