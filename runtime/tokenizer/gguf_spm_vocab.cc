// tokenizer.ggml.model "llama" (llama.cpp's LLAMA_VOCAB_TYPE_SPM), key by key:
//   tokenizer.ggml.tokens       the pieces, in id order (an empty one is "[EMPTY_<id>]", as llama.cpp
//                               renames it); each valid UTF-8 and distinct
//   tokenizer.ggml.scores       one finite number per token: the BPE merge priority (required: with no
//                               scores llama.cpp merges left to right, which no real vocabulary means)
//   tokenizer.ggml.token_type   one per token, llama.cpp's llama_token_type: 1 normal, 2 unknown
//                               (exactly one), 3 control, 4 user-defined, 5 unused, 6 byte ("<0xNN>",
//                               all 256 present: llama.cpp falls back to them for any character the
//                               merges leave alone)
//   tokenizer.ggml.add_space_prefix   default true: a space before the text and after every special
//                               token (llama.cpp's is_prev_special) = SentencePiece's add_dummy_prefix,
//                               which applies per stretch of text between added tokens
//   tokenizer.ggml.add_bos_token / add_eos_token   defaults true / false for this vocabulary type
//   tokenizer.ggml.bos/eos_token_id   defaults 1 / 2 (read in gguf_vocab.cc)
//   tokenizer.ggml.pre          ignored, as llama.cpp ignores it for this vocabulary type
//                               (convert_hf_to_gguf.py writes "default")
//   refused, by name: tokenizer.ggml.precompiled_charsmap (a normalization map llama.cpp's SPM
//   tokenizer does not apply), tokenizer.ggml.remove_extra_whitespaces = true (likewise ignored
//   there), and a general.name with "phi-3" / "phi3", for which llama.cpp strips the whitespace
//   after special tokens.
//
// The model handed to SentencePiece is what llama.cpp's llm_tokenizer_spm_session does: BPE over
// characters, the pair of highest score merged first (leftmost on ties), "<0xNN>" byte fallback,
// spaces as U+2581, no normalization (NormalizerSpec "identity"). llama.cpp looks every merge up in
// the whole vocabulary, so user-defined and unused tokens go to SentencePiece as normal pieces
// (which it may merge into, as llama.cpp does; SentencePiece would otherwise match user-defined
// pieces inside the escaped text and re-split unused ones). Control, unknown and user-defined
// tokens are matched in the raw text first, as llama.cpp does with parse_special (tpserve's encode
// always matches a tokenizer's special tokens written in the text).
#include "runtime/tokenizer/gguf_spm_vocab.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <limits>
#include <unordered_map>

#include "common/error.h"
#include "runtime/tokenizer/gguf_vocab_fields.h"
#include "runtime/tokenizer/sentencepiece_model.h"
#include "runtime/tokenizer/sentencepiece_proto.h"
#include "runtime/tokenizer/utf8.h"

namespace tpserve::runtime {

namespace fs = std::filesystem;
using nlohmann::json;
using gguf_fields::array_at;
using gguf_fields::bool_at;
using gguf_fields::fail;
using gguf_fields::id_at;
using PieceType = SentencePieceModelSpec::PieceType;

namespace {

constexpr const char* kTokensKey = "tokenizer.ggml.tokens";
constexpr const char* kScoresKey = "tokenizer.ggml.scores";
constexpr const char* kTypesKey = "tokenizer.ggml.token_type";

// "<0xNN>" (upper-case hex, the only form llama.cpp's byte_to_token looks up) -> NN.
std::optional<int> byte_of_piece(const std::string& text) {
  if (text.size() != 6 || !text.starts_with("<0x") || text[5] != '>') return std::nullopt;
  int value = 0;
  for (char c : text.substr(3, 2)) {
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (digit < 0) return std::nullopt;
    value = value * 16 + digit;
  }
  return value;
}

void refuse_unsupported(const json& metadata, const fs::path& file) {
  if (metadata.contains("tokenizer.ggml.precompiled_charsmap")) {
    raise(ErrorCode::kUnimplemented, "{}: metadata 'tokenizer.ggml.precompiled_charsmap': a normalization map "
          "is not supported for a llama (SentencePiece) vocabulary", file.string());
  }
  if (bool_at(metadata, file, "tokenizer.ggml.remove_extra_whitespaces", false)) {
    raise(ErrorCode::kUnimplemented, "{}: metadata 'tokenizer.ggml.remove_extra_whitespaces': true is not "
          "supported for a llama (SentencePiece) vocabulary", file.string());
  }
  auto name = metadata.find("general.name");
  if (name != metadata.end() && name->is_string()) {
    std::string lower = name->get<std::string>();
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    if (lower.find("phi-3") != std::string::npos || lower.find("phi3") != std::string::npos) {
      raise(ErrorCode::kUnimplemented, "{}: metadata 'general.name': '{}': llama.cpp strips the whitespace after "
            "this model's special tokens (its Phi-3 rule); not supported", file.string(),
            name->get<std::string>().substr(0, 64));
    }
  }
}

// The pieces, with the GGUF type of each; every per-token check.
std::vector<SentencePieceModelSpec::Piece> read_pieces(const json& metadata, const fs::path& file,
                                                       std::vector<int>& gguf_types) {
  const json& tokens = array_at(metadata, file, kTokensKey);
  if (tokens.empty() || static_cast<int64_t>(tokens.size()) > kTokenIdLimit) {
    fail(file, kTokensKey, fmt::format("{} tokens (1 to {} expected)", tokens.size(), kTokenIdLimit));
  }
  const json& scores = array_at(metadata, file, kScoresKey);
  const json& types = array_at(metadata, file, kTypesKey);
  for (const auto& [key, array] : {std::pair{kScoresKey, &scores}, std::pair{kTypesKey, &types}}) {
    if (array->size() != tokens.size()) {
      fail(file, key, fmt::format("{} entries for {} tokens", array->size(), tokens.size()));
    }
  }
  std::vector<SentencePieceModelSpec::Piece> pieces(tokens.size());
  gguf_types.assign(tokens.size(), 0);
  std::unordered_map<std::string, size_t> seen;
  std::array<bool, 256> bytes{};
  std::optional<size_t> unknown;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (!tokens[i].is_string()) fail(file, kTokensKey, fmt::format("entry {} is not a string", i));
    std::string text = tokens[i].get<std::string>();
    if (text.empty()) text = fmt::format("[EMPTY_{}]", i);  // llama.cpp's name for it
    if (utf8::find_invalid(text) != std::string_view::npos) {
      fail(file, kTokensKey, fmt::format("entry {} is not valid UTF-8", i));
    }
    if (auto [it, fresh] = seen.emplace(text, i); !fresh) {
      fail(file, kTokensKey, fmt::format("entry {} repeats entry {}", i, it->second));
    }
    if (!scores[i].is_number() || !(std::abs(scores[i].get<double>()) <= std::numeric_limits<float>::max())) {
      fail(file, kScoresKey, fmt::format("entry {} is not a finite number", i));
    }
    if (!types[i].is_number_integer() || types[i].get<int64_t>() < 1 || types[i].get<int64_t>() > 6) {
      fail(file, kTypesKey, fmt::format("entry {} is {} (1 to 6 expected: llama.cpp's token types)", i,
                                        types[i].dump().substr(0, 32)));
    }
    const auto type = static_cast<PieceType>(types[i].get<int>());
    if (type == PieceType::kByte) {
      const std::optional<int> byte = byte_of_piece(text);
      if (!byte) fail(file, kTokensKey, fmt::format("entry {} is a byte token (type 6) but not \"<0xNN>\"", i));
      bytes[static_cast<size_t>(*byte)] = true;
    }
    if (type == PieceType::kUnknown) {
      if (unknown) fail(file, kTypesKey, fmt::format("entries {} and {} are both the unknown token (2)", *unknown, i));
      unknown = i;
    }
    gguf_types[i] = static_cast<int>(type);
    // llama.cpp merges into any token whose text matches: user-defined and unused ones are normal
    // pieces to SentencePiece (see the top of the file).
    const bool mergeable = type == PieceType::kUserDefined || type == PieceType::kUnused;
    pieces[i] = {std::move(text), static_cast<float>(scores[i].get<double>()),
                 mergeable ? PieceType::kNormal : type};
  }
  if (!unknown) fail(file, kTypesKey, "no unknown token (type 2); SentencePiece needs one");
  for (size_t byte = 0; byte < bytes.size(); ++byte) {
    if (!bytes[byte]) {
      fail(file, kTokensKey, fmt::format("no byte token <0x{:02X}> (type 6): llama.cpp falls back to the 256 "
                                         "byte tokens for characters outside the vocabulary", byte));
    }
  }
  return pieces;
}

}  // namespace

std::unique_ptr<Tokenizer> load_gguf_spm(const json& metadata, const fs::path& file) {
  refuse_unsupported(metadata, file);
  std::vector<int> gguf_types;
  SentencePieceModelSpec spec;
  spec.pieces = read_pieces(metadata, file, gguf_types);
  spec.model_type = SentencePieceModelSpec::ModelType::kBpe;
  spec.byte_fallback = true;
  spec.add_dummy_prefix = bool_at(metadata, file, "tokenizer.ggml.add_space_prefix", true);
  const auto vocab_size = static_cast<int64_t>(spec.pieces.size());
  spec.unk_id = static_cast<int32_t>(std::find(gguf_types.begin(), gguf_types.end(),
                                               static_cast<int>(PieceType::kUnknown)) - gguf_types.begin());
  // The TrainerSpec ids only name pieces for SentencePiece's own bos_id() / eos_id(), which tpserve
  // does not ask; the GGUF keys decide.
  spec.bos_id = -1;
  spec.eos_id = -1;

  SentencePieceVocab vocab;
  vocab.source = file.string() + " (GGUF llama vocabulary)";
  for (size_t i = 0; i < gguf_types.size(); ++i) {
    const auto id = static_cast<int32_t>(i);
    const auto type = static_cast<PieceType>(gguf_types[i]);
    // Control pieces are added by SentencePieceTokenizer itself.
    if (type == PieceType::kUnknown) vocab.added.push_back({spec.pieces[i].text, id, true});
    if (type == PieceType::kUserDefined) {
      vocab.added.push_back({spec.pieces[i].text, id, false});
      vocab.verbatim_ids.push_back(id);  // llama.cpp's token_to_piece copies user-defined text as is
    }
    if (type == PieceType::kUnused) vocab.silent_ids.push_back(id);  // and writes nothing for unused
  }
  // llama.cpp's default ids, <s> = 1 and </s> = 2, are always in range: a llama vocabulary has
  // <unk> and the 256 byte tokens at least.
  if (bool_at(metadata, file, "tokenizer.ggml.add_bos_token", true)) {
    vocab.prefix_ids.push_back(id_at(metadata, file, "tokenizer.ggml.bos_token_id", vocab_size).value_or(1));
  }
  if (bool_at(metadata, file, "tokenizer.ggml.add_eos_token", false)) {
    vocab.suffix_ids.push_back(id_at(metadata, file, "tokenizer.ggml.eos_token_id", vocab_size).value_or(2));
  }
  vocab.serialized_model = serialize_model_proto(spec);
  return load_sentencepiece(vocab);
}

}  // namespace tpserve::runtime
