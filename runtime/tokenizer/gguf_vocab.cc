#include "runtime/tokenizer/gguf_vocab.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <unordered_map>

#include "common/error.h"
#include "runtime/tokenizer/byte_level_bpe.h"
#include "runtime/tokenizer/gguf_spm_vocab.h"
#include "runtime/tokenizer/gguf_vocab_fields.h"
#include "runtime/tokenizer/model_files.h"
#include "runtime/tokenizer/utf8.h"

namespace tpserve::runtime {

namespace fs = std::filesystem;
using nlohmann::json;
using gguf_fields::array_at;
using gguf_fields::bool_at;
using gguf_fields::fail;
using gguf_fields::id_at;

namespace {

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
constexpr int kControlToken = 3;
constexpr int kUserDefinedToken = 4;

struct PreTokenizer {
  const char* name;
  std::vector<std::string_view> patterns;  // applied in turn, each re-splitting the last's pieces
  bool nfc;
};

// tokenizer.ggml.pre -> the split regexes (llama-vocab.cpp's llm_tokenizer_bpe), each equal to the
// Hugging Face tokenizer.json pre-tokenizer convert_hf_to_gguf hashed to pick that name.
const std::vector<PreTokenizer>& pre_tokenizers() {
  static const std::vector<PreTokenizer> table = {
      {"gpt-2", {kGpt2SplitPattern}, false},
      // SmolLM / StarCoder: Digits(individual_digits) then ByteLevel(use_regex).
      {"smollm", {R"(\p{N})", kGpt2SplitPattern}, false},
      {"starcoder", {R"(\p{N})", kGpt2SplitPattern}, false},
      {"refact", {R"(\p{N})", kGpt2SplitPattern}, false},
      // Qwen2 / 2.5: NFC normalizer, then Qwen's Split regex.
      {"qwen2", {kQwenSplitPattern}, true},
      {"llama-bpe", {kLlama3SplitPattern}, false},
  };
  return table;
}

std::unique_ptr<ByteLevelBpeTokenizer> load_gpt2(const json& metadata, const fs::path& file) {
  ByteLevelBpeConfig config;
  config.source = file.string() + " (GGUF byte-level BPE)";
  const json& tokens = array_at(metadata, file, "tokenizer.ggml.tokens");
  if (tokens.empty() || static_cast<int64_t>(tokens.size()) > kTokenIdLimit) {
    fail(file, "tokenizer.ggml.tokens", fmt::format("{} tokens (1 to {} expected)", tokens.size(),
                                                    kTokenIdLimit));
  }
  const json* types = nullptr;
  if (metadata.contains("tokenizer.ggml.token_type")) {
    types = &array_at(metadata, file, "tokenizer.ggml.token_type");
    if (types->size() != tokens.size()) {
      fail(file, "tokenizer.ggml.token_type", fmt::format("{} entries for {} tokens", types->size(),
                                                          tokens.size()));
    }
  }
  std::unordered_map<std::string, int32_t> ids;  // byte-level text -> id, for the merges
  for (size_t i = 0; i < tokens.size(); ++i) {
    const auto id = static_cast<int32_t>(i);
    if (!tokens[i].is_string()) fail(file, "tokenizer.ggml.tokens", fmt::format("entry {} is not a string", i));
    const std::string& text = tokens[i].get_ref<const std::string&>();
    const int type = types != nullptr && (*types)[i].is_number_integer() ? (*types)[i].get<int>() : 1;
    if (type == kControlToken || type == kUserDefinedToken) {
      // Matched inside the text as bytes: content that is not UTF-8 (a lone lead byte) would cut
      // a character in two and hand the pre-tokenizer invalid UTF-8 (found by the gguf fuzz target).
      if (utf8::find_invalid(text) != std::string_view::npos) {
        fail(file, "tokenizer.ggml.tokens",
             fmt::format("entry {} (a control or user-defined token) is not valid UTF-8", i));
      }
      config.added.add(AddedToken{text, id, type == kControlToken});
    }
    std::optional<std::string> bytes = byte_level_to_bytes(text);
    if (!bytes) {
      if (type == kControlToken || type == kUserDefinedToken) continue;  // written as text only
      fail(file, "tokenizer.ggml.tokens", fmt::format("entry {} is not a byte-level token", i));
    }
    if (!ids.emplace(text, id).second) {
      fail(file, "tokenizer.ggml.tokens", fmt::format("entry {} repeats an earlier token", i));
    }
    config.model.add_token(std::move(*bytes), id);
  }
  const json& merges = array_at(metadata, file, "tokenizer.ggml.merges");
  auto id_of = [&](const std::string& text, size_t index) {
    auto it = ids.find(text);
    if (it == ids.end()) {
      fail(file, "tokenizer.ggml.merges", fmt::format("entry {} uses a token not in the vocabulary", index));
    }
    return it->second;
  };
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string* merge = merges[i].is_string() ? &merges[i].get_ref<const std::string&>() : nullptr;
    const size_t space = merge == nullptr ? std::string::npos : merge->find(' ');
    if (space == std::string::npos) {
      fail(file, "tokenizer.ggml.merges", fmt::format("entry {} is not \"left right\"", i));
    }
    const std::string left = merge->substr(0, space);
    const std::string right = merge->substr(space + 1);
    config.model.add_merge(id_of(left, i), id_of(right, i), id_of(left + right, i),
                           static_cast<int32_t>(i));
  }
  auto pre = metadata.find("tokenizer.ggml.pre");
  const std::string pre_name = pre != metadata.end() && pre->is_string() ? pre->get<std::string>() : "gpt-2";
  const PreTokenizer* chosen = nullptr;
  std::string known;
  for (const PreTokenizer& entry : pre_tokenizers()) {
    if (pre_name == entry.name) chosen = &entry;
    known += (known.empty() ? "" : ", ") + std::string(entry.name);
  }
  if (chosen == nullptr) {
    raise(ErrorCode::kUnimplemented, "{}: metadata 'tokenizer.ggml.pre': '{}' is not supported ({} "
          "are)", file.string(), pre_name.substr(0, 64), known);
  }
  config.nfc = chosen->nfc;
  for (std::string_view pattern : chosen->patterns) {
    config.splitters.push_back(std::make_unique<RegexSplitter>(pattern, "tokenizer.ggml.pre"));
  }
  const auto vocab_size = static_cast<int64_t>(tokens.size());
  if (bool_at(metadata, file, "tokenizer.ggml.add_bos_token", false)) {
    auto bos = id_at(metadata, file, "tokenizer.ggml.bos_token_id", vocab_size);
    if (!bos) fail(file, "tokenizer.ggml.add_bos_token", "is true but tokenizer.ggml.bos_token_id is missing");
    config.prefix_ids.push_back(*bos);
  }
  if (bool_at(metadata, file, "tokenizer.ggml.add_eos_token", false)) {
    auto eos = id_at(metadata, file, "tokenizer.ggml.eos_token_id", vocab_size);
    if (!eos) fail(file, "tokenizer.ggml.add_eos_token", "is true but tokenizer.ggml.eos_token_id is missing");
    config.suffix_ids.push_back(*eos);
  }
  return std::make_unique<ByteLevelBpeTokenizer>(std::move(config));
}

}  // namespace

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const json& metadata, const fs::path& file) {
  auto model = metadata.find("tokenizer.ggml.model");
  if (model == metadata.end() || !model->is_string()) {
    raise(ErrorCode::kNotFound, "{}: metadata 'tokenizer.ggml.model' is missing: the file has no "
          "tokenizer", file.string());
  }
  const std::string name = model->get<std::string>();
  std::unique_ptr<Tokenizer> tokenizer;
  if (name == "gpt2") {
    tokenizer = load_gpt2(metadata, file);
  } else if (name == "llama") {
    tokenizer = load_gguf_spm(metadata, file);
  } else {
    raise(ErrorCode::kUnimplemented, "{}: metadata 'tokenizer.ggml.model': '{}' is not supported "
          "(gpt2, llama are)", file.string(), name.substr(0, 64));
  }
  const int64_t vocab_size = tokenizer->vocab_size();
  TokenizerSettings settings;
  auto arch = metadata.find("general.architecture");
  if (arch != metadata.end() && arch->is_string()) settings.model_type = arch->get<std::string>();
  // llama.cpp's defaults when the keys are absent: <s> = 1 and </s> = 2 for a llama vocabulary
  // (llama-vocab.cpp, load), none for gpt2 here.
  const auto default_id = [&](int32_t id) {
    return name == "llama" && id < vocab_size ? std::optional<int32_t>(id) : std::nullopt;
  };
  std::optional<int32_t> bos = id_at(metadata, file, "tokenizer.ggml.bos_token_id", vocab_size);
  std::optional<int32_t> eos = id_at(metadata, file, "tokenizer.ggml.eos_token_id", vocab_size);
  if (!metadata.contains("tokenizer.ggml.bos_token_id")) bos = default_id(1);
  if (!metadata.contains("tokenizer.ggml.eos_token_id")) eos = default_id(2);
  settings.bos_token_id = bos;
  if (eos) settings.eos_token_ids.push_back(*eos);
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    if (auto id = id_at(metadata, file, key, vocab_size)) settings.eos_token_ids.push_back(*id);
  }
  assign_special_ids(*tokenizer, settings);
  // What transformers passes a chat template as bos_token / eos_token / unk_token / pad_token: the
  // text of those tokens (its GGUF loader sets them from the same ids).
  EmbeddedChatTemplate chat;
  auto chat_template = metadata.find("tokenizer.chat_template");
  if (chat_template != metadata.end()) {
    if (!chat_template->is_string()) fail(file, "tokenizer.chat_template", "expected a STRING");
    chat.text = chat_template->get<std::string>();
    chat.origin = file.string() + " (tokenizer.chat_template)";
  }
  const json& tokens = metadata.at("tokenizer.ggml.tokens");
  const auto add_special = [&](const char* token_name, std::optional<int32_t> id) {
    if (id) chat.special_tokens.emplace_back(token_name, tokens[static_cast<size_t>(*id)].get<std::string>());
  };
  add_special("bos_token", bos);
  add_special("eos_token", eos);
  add_special("unk_token", id_at(metadata, file, "tokenizer.ggml.unknown_token_id", vocab_size));
  add_special("pad_token", id_at(metadata, file, "tokenizer.ggml.padding_token_id", vocab_size));
  tokenizer->set_embedded_chat_template(std::move(chat));
  return tokenizer;
}

}  // namespace tpserve::runtime
