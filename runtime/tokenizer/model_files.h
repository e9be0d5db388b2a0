// What a model directory says about its tokenizer outside the tokenizer file itself:
// tokenizer_config.json (bos/eos tokens, added_tokens_decoder, chat_template, add_bos_token) and
// config.json / generation_config.json (model_type, bos/eos ids).
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "runtime/tokenizer/added_tokens.h"

namespace tpserve::runtime {

struct TokenizerSettings {
  std::string model_type;                 // config.json "model_type" ("qwen2", "llama", "chatglm", ...)
  std::optional<std::string> bos_token;   // tokenizer_config.json, as text
  std::optional<std::string> eos_token;
  std::optional<bool> add_bos_token;
  std::optional<bool> add_eos_token;
  std::optional<int32_t> bos_token_id;     // config.json
  std::vector<int32_t> eos_token_ids;      // config.json and generation_config.json (int or list)
  std::vector<AddedToken> added_tokens;    // tokenizer_config.json "added_tokens_decoder"
  std::string chat_template;               // tokenizer_config.json "chat_template" when it is a string
};

// Reads the files that exist; absent files leave fields empty. Throws tpserve::Error(kDataLoss)
// naming the file when one is not valid JSON or a field has the wrong type.
TokenizerSettings read_tokenizer_settings(const std::filesystem::path& model_dir);

// Parses a JSON file, or throws tpserve::Error(kDataLoss) "<path>: not valid JSON: ...".
nlohmann::json read_json_file(const std::filesystem::path& path);

}  // namespace tpserve::runtime
