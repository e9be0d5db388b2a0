#include "runtime/tokenizer/byte_level_bpe.h"

#include <array>
#include <unordered_map>

#include "common/error.h"
#include "runtime/tokenizer/unicode_nfc.h"
#include "runtime/tokenizer/utf8.h"

namespace tpserve::runtime {
namespace {

struct ByteAlphabet {
  std::array<std::string, 256> to_unicode;
  std::unordered_map<char32_t, unsigned char> to_byte;
  ByteAlphabet() {
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + extra++);
      utf8::append(to_unicode[b], cp);
      to_byte[cp] = static_cast<unsigned char>(b);
    }
  }
};

const ByteAlphabet& alphabet() {
  static const ByteAlphabet instance;
  return instance;
}

}  // namespace

const std::string& byte_to_unicode(unsigned char byte) { return alphabet().to_unicode[byte]; }

std::optional<std::string> byte_level_to_bytes(std::string_view token) {
  if (utf8::find_invalid(token) != std::string_view::npos) return std::nullopt;
  std::string bytes;
  bytes.reserve(token.size());
  const auto& to_byte = alphabet().to_byte;
  for (size_t pos = 0; pos < token.size();) {
    auto it = to_byte.find(utf8::next(token, pos));
    if (it == to_byte.end()) return std::nullopt;
    bytes.push_back(static_cast<char>(it->second));
  }
  return bytes;
}

ByteLevelBpeTokenizer::ByteLevelBpeTokenizer(ByteLevelBpeConfig config) : config_(std::move(config)) {
  vocab_size_ = config_.model.id_limit();
  for (const AddedToken& token : config_.added.all()) vocab_size_ = std::max(vocab_size_, token.id + 1);
}

void ByteLevelBpeTokenizer::encode_plain(std::string_view text, std::vector<int32_t>& out) const {
  std::string buffer;
  if (config_.nfc && !is_nfc_quick(text)) {
    buffer = to_nfc(text);
    text = buffer;
  }
  if (config_.add_prefix_space && !text.empty() && text[0] != ' ') {
    buffer = " " + std::string(text);
    text = buffer;
  }
  thread_local std::vector<std::string_view> pieces, next_pieces;
  pieces.assign(1, text);
  for (const auto& splitter : config_.splitters) {
    next_pieces.clear();
    for (std::string_view piece : pieces) splitter->split(piece, next_pieces);
    std::swap(pieces, next_pieces);
  }
  for (std::string_view piece : pieces) config_.model.encode(piece, out);
}

std::vector<int32_t> ByteLevelBpeTokenizer::encode(std::string_view text, bool add_special_tokens) const {
  utf8::validate(text, "text to encode");
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special_tokens) ids = config_.prefix_ids;
  std::vector<TextSegment> segments;
  config_.added.split(text, segments);
  for (const TextSegment& segment : segments) {
    if (segment.added_id >= 0) {
      ids.push_back(segment.added_id);
    } else {
      encode_plain(segment.text, ids);
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), config_.suffix_ids.begin(), config_.suffix_ids.end());
  return ids;
}

void ByteLevelBpeTokenizer::append_token_bytes(int32_t id, bool skip_special_tokens, DecodeState& state,
                                               std::string& out) const {
  state.at_start = false;
  if (const AddedToken* added = config_.added.by_id(id)) {
    if (!(skip_special_tokens && added->special)) out += added->content;
    return;
  }
  const std::string* bytes = config_.model.bytes_of(id);
  if (bytes == nullptr) {
    raise(ErrorCode::kOutOfRange, "token id {} is not in the vocabulary of {} (size {})", id, config_.source,
          vocab_size_);
  }
  out += *bytes;
}

std::optional<int32_t> ByteLevelBpeTokenizer::token_to_id(std::string_view token) const {
  if (const AddedToken* added = config_.added.by_content(token)) return added->id;
  if (auto bytes = byte_level_to_bytes(token)) return config_.model.find(*bytes);
  return std::nullopt;
}

bool ByteLevelBpeTokenizer::is_special(int32_t id) const {
  const AddedToken* added = config_.added.by_id(id);
  return added != nullptr && added->special;
}

}  // namespace tpserve::runtime
