// Reading tokenizer.ggml.* metadata keys (a GGUF file's metadata as JSON, runtime/formats/gguf.h):
// the checks gguf_vocab.cc and gguf_spm_vocab.cc share. Every error is one line naming the file
// and the key.
#pragma once

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>

#include "common/error.h"

namespace tpserve::runtime::gguf_fields {

[[noreturn]] inline void fail(const std::filesystem::path& file, const std::string& key, const std::string& problem) {
  raise(ErrorCode::kDataLoss, "{}: metadata '{}': {}", file.string(), key, problem);
}

inline const nlohmann::json& array_at(const nlohmann::json& metadata, const std::filesystem::path& file,
                                      const std::string& key) {
  auto it = metadata.find(key);
  if (it == metadata.end() || !it->is_array()) fail(file, key, "missing or not an array");
  return *it;
}

// An id key, when present: a non-negative integer below the vocabulary size.
inline std::optional<int32_t> id_at(const nlohmann::json& metadata, const std::filesystem::path& file,
                                    const std::string& key, int64_t vocab_size) {
  auto it = metadata.find(key);
  if (it == metadata.end()) return std::nullopt;
  if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() >= vocab_size) {
    fail(file, key, fmt::format("{} is not a token id below the vocabulary size {}", it->dump(), vocab_size));
  }
  return it->get<int32_t>();
}

inline bool bool_at(const nlohmann::json& metadata, const std::filesystem::path& file, const std::string& key,
                    bool fallback) {
  auto it = metadata.find(key);
  if (it == metadata.end()) return fallback;
  if (!it->is_boolean()) fail(file, key, "expected a BOOL");
  return it->get<bool>();
}

}  // namespace tpserve::runtime::gguf_fields
