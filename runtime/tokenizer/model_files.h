// What a model directory says about its tokenizer and its generation outside the tokenizer file
// itself: tokenizer_config.json (bos/eos tokens, added_tokens_decoder, chat_template,
// add_bos_token), config.json (model_type, bos/eos ids) and generation_config.json (eos ids and
// the checkpoint's sampling defaults). Both JSON files are read through a field table
// (common/field_table.h): supported, harmless or refused; unknown fields are logged once.
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
  std::vector<std::string> unknown_fields;  // tokenizer_config.json fields no table lists
};

// generation_config.json (transformers' GenerationConfig): the fields tpserve applies. Each is
// unset when the file (or the field) is absent.
struct GenerationConfig {
  bool present = false;              // the file exists
  std::optional<bool> do_sample;     // false: greedy decoding by default
  std::optional<float> temperature;  // >= 0
  std::optional<float> top_p;        // (0, 1]
  std::optional<int32_t> top_k;      // >= 0, 0 = off
  std::optional<float> min_p;        // [0, 1]
  std::optional<float> repetition_penalty;  // > 0
  std::vector<int32_t> eos_token_ids;       // int or list
  std::vector<std::string> unknown_fields;  // fields no table lists
};

// Reads <model_dir>/generation_config.json when it exists. Throws tpserve::Error naming the file
// and the field: kDataLoss for invalid JSON, kInvalidArgument for a value of the wrong type or
// outside its meaning (top_p 0, a negative temperature, an id outside int32).
GenerationConfig read_generation_config(const std::filesystem::path& model_dir);

// Reads the files that exist; absent files leave fields empty. Throws tpserve::Error(kDataLoss)
// naming the file when one is not valid JSON or a field has the wrong type, kUnimplemented naming
// a refused tokenizer_config.json field, and read_generation_config's errors.
TokenizerSettings read_tokenizer_settings(const std::filesystem::path& model_dir);

// The tokenizer's EOS ids (the configured ones plus the family's end-of-turn tokens its vocabulary
// has) and BOS id, from the settings.
class Tokenizer;
void assign_special_ids(Tokenizer& tokenizer, const TokenizerSettings& settings);

// Parses a JSON file, or throws tpserve::Error(kDataLoss) "<path>: not valid JSON: ...".
nlohmann::json read_json_file(const std::filesystem::path& path);

}  // namespace tpserve::runtime
