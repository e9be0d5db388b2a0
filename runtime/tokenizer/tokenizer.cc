#include "runtime/tokenizer/tokenizer.h"

#include <algorithm>

#include "common/error.h"
#include "runtime/tokenizer/byte_level_bpe.h"
#include "runtime/tokenizer/model_files.h"
#include "runtime/tokenizer/sentencepiece_model.h"
#include "runtime/tokenizer/utf8.h"

namespace tpserve::runtime {
namespace {

namespace fs = std::filesystem;

// End-of-turn tokens the families stop on besides their configured EOS: ChatML's <|im_end|> and
// <|endoftext|> (Qwen generation_config.json lists both), Llama-3's <|eot_id|> <|end_of_text|>
// <|eom_id|>, ChatGLM3's <|user|> <|observation|> (its chat() stops on them).
constexpr std::string_view kStopTokens[] = {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>",
                                            "<|eom_id|>"};
constexpr std::string_view kChatGlmStopTokens[] = {"<|user|>", "<|observation|>"};

std::unique_ptr<Tokenizer> load_backend(const fs::path& dir, const TokenizerSettings& settings) {
  bool has_sentencepiece = fs::exists(dir / "tokenizer.model");
  if (fs::exists(dir / "tokenizer.json")) {
    try {
      return load_tokenizer_json(dir / "tokenizer.json");
    } catch (const Error& e) {
      // A SentencePiece-style tokenizer.json (Llama-2's) is served from its tokenizer.model.
      if (e.code() != ErrorCode::kUnimplemented || !has_sentencepiece) throw;
    }
  }
  if (fs::exists(dir / "qwen.tiktoken")) return load_tiktoken(dir / "qwen.tiktoken", TiktokenFlavor::kQwen);
  if (has_sentencepiece) {
    // Meta's original Llama-3 checkpoints ship their tiktoken ranks as tokenizer.model.
    if (looks_like_tiktoken(dir / "tokenizer.model")) {
      return load_tiktoken(dir / "tokenizer.model", TiktokenFlavor::kLlama3);
    }
    return load_sentencepiece(dir / "tokenizer.model", settings);
  }
  raise(ErrorCode::kNotFound, "{}: no tokenizer.json, qwen.tiktoken or tokenizer.model", dir.string());
}

}  // namespace

namespace {
void add_unique(std::vector<int32_t>& ids, std::optional<int32_t> id) {
  if (id && std::find(ids.begin(), ids.end(), *id) == ids.end()) ids.push_back(*id);
}

}  // namespace

void assign_special_ids(Tokenizer& tokenizer, const TokenizerSettings& settings) {
  std::vector<int32_t> eos;
  if (settings.eos_token) add_unique(eos, tokenizer.token_to_id(*settings.eos_token));
  for (int32_t id : settings.eos_token_ids) {
    if (id >= 0 && id < tokenizer.vocab_size()) add_unique(eos, id);
  }
  for (std::string_view name : kStopTokens) add_unique(eos, tokenizer.token_to_id(name));
  if (settings.model_type == "chatglm") {
    for (std::string_view name : kChatGlmStopTokens) add_unique(eos, tokenizer.token_to_id(name));
  }
  std::optional<int32_t> bos = settings.bos_token_id;
  if (settings.bos_token) {
    if (auto id = tokenizer.token_to_id(*settings.bos_token)) bos = id;
  }
  tokenizer.set_special_ids(std::move(eos), bos);
}

std::unique_ptr<Tokenizer> Tokenizer::load(const fs::path& model_dir) {
  if (!fs::is_directory(model_dir)) {
    raise(ErrorCode::kNotFound, "{}: model directory does not exist", model_dir.string());
  }
  TokenizerSettings settings = read_tokenizer_settings(model_dir);
  std::unique_ptr<Tokenizer> tokenizer = load_backend(model_dir, settings);
  assign_special_ids(*tokenizer, settings);
  return tokenizer;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  DecodeState state;
  std::string bytes;
  bytes.reserve(ids.size() * 4);
  for (int32_t id : ids) append_token_bytes(id, skip_special_tokens, state, bytes);
  return utf8::repair(bytes);
}

std::string IncrementalDecoder::push(int32_t id) {
  tokenizer_.append_token_bytes(id, skip_special_tokens_, state_, pending_);
  size_t complete = utf8::complete_prefix_length(pending_);
  if (complete == 0) return {};
  std::string text = utf8::repair(std::string_view(pending_).substr(0, complete));
  pending_.erase(0, complete);
  return text;
}

std::string IncrementalDecoder::finish() {
  std::string text = utf8::repair(pending_);
  pending_.clear();
  return text;
}

}  // namespace tpserve::runtime
