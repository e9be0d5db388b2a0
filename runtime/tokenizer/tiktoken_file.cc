// tiktoken rank files: one "base64(token bytes) rank" per line, ranks 0..N-1. tiktoken merges the
// adjacent pair whose concatenation has the lowest rank, after first taking a piece whole when it is
// a token; BytePairModel does exactly that once every split of every token into two tokens is
// registered as a merge ranked by the whole token (how transformers' TikTokenConverter writes the
// equivalent tokenizer.json merges).
#include <fstream>

#include "common/error.h"
#include "runtime/tokenizer/byte_level_bpe.h"
#include "runtime/tokenizer/utf8.h"

namespace tpserve::runtime {
namespace {

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

bool base64_decode(std::string_view text, std::string& out) {
  out.clear();
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=') break;
    int value = base64_value(c);
    if (value < 0) return false;
    buffer = (buffer << 6) | value;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xFF));
    }
  }
  return !out.empty();
}

// Qwen v1 (tokenization_qwen.py): SPECIAL_TOKENS = (ENDOFTEXT, IMSTART, IMEND) + 205 extras, ids from
// len(mergeable_ranks).
std::vector<std::string> qwen_specials() {
  std::vector<std::string> names = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  for (int i = 0; i < 205; ++i) names.push_back("<|extra_" + std::to_string(i) + "|>");
  return names;
}

// Meta's llama3/tokenizer.py: 256 special tokens after the ranks, reserved ones filling the gaps.
std::vector<std::string> llama3_specials() {
  std::vector<std::string> names = {"<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                                    "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>",
                                    "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>",
                                    "<|python_tag|>", "<|image|>"};
  for (int i = 2; names.size() < 256; ++i) names.push_back("<|reserved_special_token_" + std::to_string(i) + "|>");
  return names;
}

// Registering merges tries every cut of every token, quadratic in its length. Real tokens are short
// (qwen.tiktoken's longest is 128 bytes); the cap keeps a hostile file from turning that into a hang.
constexpr size_t kMaxTokenBytes = 512;

}  // namespace

bool looks_like_tiktoken(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string line;
  if (!std::getline(in, line)) return false;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  size_t space = line.find(' ');
  std::string bytes;
  return space != std::string::npos && base64_decode(line.substr(0, space), bytes) &&
         line.find_first_not_of("0123456789", space + 1) == std::string::npos;
}

std::unique_ptr<ByteLevelBpeTokenizer> load_tiktoken(const std::filesystem::path& path, TiktokenFlavor flavor) {
  std::ifstream in(path, std::ios::binary);
  if (!in) raise(ErrorCode::kNotFound, "{}: cannot open", path.string());
  ByteLevelBpeConfig config;
  config.source = path.string() + " (tiktoken ranks)";
  // Ranks number the tokens 0..N-1, each once: tiktoken refuses repeated ranks, and the specials
  // are numbered from N (Qwen: len(mergeable_ranks)), so a gap or a stray large rank would shift
  // them. The table is sized by the lines read, never by a rank's value.
  std::vector<std::string> tokens;
  std::vector<size_t> line_of_rank;
  std::string line, bytes;
  size_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();  // qwen.tiktoken as shipped has CRLF lines
    if (line.empty()) continue;
    size_t space = line.find(' ');
    int64_t rank = -1;
    if (space != std::string::npos && base64_decode(std::string_view(line).substr(0, space), bytes) &&
        space + 1 < line.size() && line.find_first_not_of("0123456789", space + 1) == std::string::npos &&
        line.size() - space - 1 <= 9) {
      rank = std::stoll(line.substr(space + 1));
    }
    if (rank < 0 || rank >= kTokenIdLimit) {
      raise(ErrorCode::kDataLoss, "{}:{}: expected \"base64 rank\", got \"{}\"", path.string(), line_number,
            utf8::repair(line.substr(0, 80)));
    }
    if (bytes.size() > kMaxTokenBytes) {
      raise(ErrorCode::kDataLoss, "{}:{}: token of rank {} is {} bytes, more than the {} a tiktoken token may have",
            path.string(), line_number, rank, bytes.size(), kMaxTokenBytes);
    }
    if (static_cast<size_t>(rank) >= tokens.size()) {
      if (static_cast<size_t>(rank) > 2 * line_number + 1024) {  // cannot be dense: stop before allocating
        raise(ErrorCode::kDataLoss, "{}: ranks are not 0..{}: line {} has rank {}", path.string(), line_number - 1,
              line_number, rank);
      }
      tokens.resize(rank + 1);
      line_of_rank.resize(rank + 1, 0);
    }
    if (line_of_rank[rank] != 0) {
      raise(ErrorCode::kDataLoss, "{}:{}: rank {} is already used by line {}", path.string(), line_number, rank,
            line_of_rank[rank]);
    }
    line_of_rank[rank] = line_number;
    tokens[rank] = bytes;
    config.model.add_token(bytes, static_cast<int32_t>(rank));
  }
  if (tokens.empty()) raise(ErrorCode::kDataLoss, "{}: no ranks", path.string());
  for (size_t rank = 0; rank < tokens.size(); ++rank) {
    if (line_of_rank[rank] == 0) {
      raise(ErrorCode::kDataLoss, "{}: ranks are not 0..{}: rank {} is missing", path.string(), tokens.size() - 1,
            rank);
    }
  }
  for (size_t rank = 0; rank < tokens.size(); ++rank) {
    const std::string& token = tokens[rank];
    for (size_t cut = 1; cut < token.size(); ++cut) {
      auto left = config.model.find(std::string_view(token).substr(0, cut));
      if (!left) continue;
      if (auto right = config.model.find(std::string_view(token).substr(cut))) {
        config.model.add_merge(*left, *right, static_cast<int32_t>(rank), static_cast<int32_t>(rank));
      }
    }
  }
  config.model.set_whole_piece_lookup(true);
  auto next_id = static_cast<int32_t>(tokens.size());
  std::vector<std::string> specials = flavor == TiktokenFlavor::kQwen ? qwen_specials() : llama3_specials();
  for (const std::string& name : specials) config.added.add({name, next_id++, true});
  if (flavor == TiktokenFlavor::kQwen) {
    config.nfc = true;  // tokenization_qwen.py: unicodedata.normalize("NFC", text) before encoding
    config.splitters.push_back(std::make_unique<RegexSplitter>(kQwenSplitPattern, "Qwen v1 pattern"));
  } else {
    config.splitters.push_back(std::make_unique<RegexSplitter>(kLlama3SplitPattern, "Llama-3 pattern"));
    config.prefix_ids.push_back(config.added.by_content("<|begin_of_text|>")->id);
  }
  return std::make_unique<ByteLevelBpeTokenizer>(std::move(config));
}

}  // namespace tpserve::runtime
