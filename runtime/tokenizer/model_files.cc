#include "runtime/tokenizer/model_files.h"

#include <fstream>
#include <sstream>

#include "common/error.h"

namespace tpserve::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// tokenizer_config.json writes a token either as "text" or as {"content": "text", ...}.
std::optional<std::string> token_text(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content") && value["content"].is_string()) {
    return value["content"].get<std::string>();
  }
  return std::nullopt;
}

void read_ids(const json& value, std::vector<int32_t>& out) {
  if (value.is_number_integer()) {
    out.push_back(value.get<int32_t>());
  } else if (value.is_array()) {
    for (const auto& id : value) {
      if (id.is_number_integer()) out.push_back(id.get<int32_t>());
    }
  }
}

void read_tokenizer_config(const fs::path& path, TokenizerSettings& settings) {
  json config = read_json_file(path);
  if (!config.is_object()) raise(ErrorCode::kDataLoss, "{}: expected a JSON object", path.string());
  if (config.contains("bos_token")) settings.bos_token = token_text(config["bos_token"]);
  if (config.contains("eos_token")) settings.eos_token = token_text(config["eos_token"]);
  if (config.contains("add_bos_token") && config["add_bos_token"].is_boolean()) {
    settings.add_bos_token = config["add_bos_token"].get<bool>();
  }
  if (config.contains("add_eos_token") && config["add_eos_token"].is_boolean()) {
    settings.add_eos_token = config["add_eos_token"].get<bool>();
  }
  if (config.contains("chat_template") && config["chat_template"].is_string()) {
    settings.chat_template = config["chat_template"].get<std::string>();
  }
  if (config.contains("added_tokens_decoder")) {
    const json& decoder = config["added_tokens_decoder"];
    if (!decoder.is_object()) {
      raise(ErrorCode::kDataLoss, "{}: added_tokens_decoder is not an object", path.string());
    }
    for (const auto& [key, entry] : decoder.items()) {
      AddedToken token;
      try {
        token.id = std::stoi(key);
        token.content = entry.at("content").get<std::string>();
        token.special = entry.value("special", true);
        token.lstrip = entry.value("lstrip", false);
        token.rstrip = entry.value("rstrip", false);
      } catch (const std::exception& e) {
        raise(ErrorCode::kDataLoss, "{}: added_tokens_decoder[\"{}\"] is malformed: {}", path.string(), key,
              e.what());
      }
      settings.added_tokens.push_back(std::move(token));
    }
  }
}

void read_model_config(const fs::path& path, TokenizerSettings& settings) {
  json config = read_json_file(path);
  if (!config.is_object()) raise(ErrorCode::kDataLoss, "{}: expected a JSON object", path.string());
  if (config.contains("model_type") && config["model_type"].is_string()) {
    settings.model_type = config["model_type"].get<std::string>();
  }
  if (config.contains("bos_token_id") && config["bos_token_id"].is_number_integer()) {
    settings.bos_token_id = config["bos_token_id"].get<int32_t>();
  }
  if (config.contains("eos_token_id")) read_ids(config["eos_token_id"], settings.eos_token_ids);
}

}  // namespace

json read_json_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) raise(ErrorCode::kNotFound, "{}: cannot open", path.string());
  std::stringstream buffer;
  buffer << in.rdbuf();
  try {
    return json::parse(buffer.str());
  } catch (const json::exception& e) {
    raise(ErrorCode::kDataLoss, "{}: not valid JSON: {}", path.string(), e.what());
  }
}

TokenizerSettings read_tokenizer_settings(const fs::path& model_dir) {
  TokenizerSettings settings;
  if (fs::exists(model_dir / "tokenizer_config.json")) {
    read_tokenizer_config(model_dir / "tokenizer_config.json", settings);
  }
  if (fs::exists(model_dir / "config.json")) read_model_config(model_dir / "config.json", settings);
  if (fs::exists(model_dir / "generation_config.json")) {
    json generation = read_json_file(model_dir / "generation_config.json");
    if (generation.is_object() && generation.contains("eos_token_id")) {
      read_ids(generation["eos_token_id"], settings.eos_token_ids);
    }
  }
  return settings;
}

}  // namespace tpserve::runtime
