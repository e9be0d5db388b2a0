// Byte-level BPE tokenizers: Hugging Face tokenizer.json files whose model is BPE over GPT-2's
// byte-to-unicode alphabet (Qwen1.5/2/2.5, Llama-3, the tiny test models), and tiktoken rank files
// (Qwen v1's qwen.tiktoken, Meta's Llama-3 tokenizer.model), which are the same algorithm.
//
// encode: added tokens are cut out of the raw text first; each remaining stretch is normalized
// (NFC when asked), split by the pre-tokenizer regex(es), and each piece's bytes are merged by BPE.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "runtime/tokenizer/added_tokens.h"
#include "runtime/tokenizer/byte_pair_model.h"
#include "runtime/tokenizer/regex_splitter.h"
#include "runtime/tokenizer/tokenizer.h"

namespace tpserve::runtime {

struct ByteLevelBpeConfig {
  std::string source;  // the file, for describe() and errors
  bool nfc = false;    // normalizer NFC (Qwen)
  // Applied one after another, each re-splitting the pieces of the one before (a tokenizer.json
  // Sequence of Split pre-tokenizers); empty means one piece per stretch.
  std::vector<std::unique_ptr<RegexSplitter>> splitters;
  bool add_prefix_space = false;  // ByteLevel(add_prefix_space=true): " " before each stretch
  BytePairModel model;
  AddedTokens added;
  std::vector<int32_t> prefix_ids;  // what add_special_tokens puts before / after the text
  std::vector<int32_t> suffix_ids;
};

class ByteLevelBpeTokenizer : public Tokenizer {
 public:
  explicit ByteLevelBpeTokenizer(ByteLevelBpeConfig config);

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const override;
  void append_token_bytes(int32_t id, bool skip_special_tokens, DecodeState& state,
                          std::string& out) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> token_to_id(std::string_view token) const override;
  bool is_special(int32_t id) const override;
  std::string describe() const override { return config_.source; }

  const AddedTokens& added_tokens() const { return config_.added; }

 private:
  void encode_plain(std::string_view text, std::vector<int32_t>& out) const;

  ByteLevelBpeConfig config_;
  int32_t vocab_size_ = 0;
};

// GPT-2's byte <-> unicode alphabet (tokenizers' bytes_char / tiktoken's "byte-level" rendering):
// printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100.. in order.
const std::string& byte_to_unicode(unsigned char byte);  // UTF-8 of the mapped character
// The raw bytes a byte-level token string stands for, or nullopt if a character is outside the map.
std::optional<std::string> byte_level_to_bytes(std::string_view token);

// tokenizer.json with a byte-level BPE model. Throws tpserve::Error naming the file and field when
// it is malformed, and kUnimplemented for a component tpserve does not support.
std::unique_ptr<ByteLevelBpeTokenizer> load_tokenizer_json(const std::filesystem::path& path);

enum class TiktokenFlavor { kQwen, kLlama3 };

// A tiktoken rank file (one "base64(bytes) rank" per line) with the flavor's regex and specials:
// Qwen v1 (qwen.tiktoken: NFC, <|endoftext|> <|im_start|> <|im_end|> <|extra_0..204|> after the
// ranks) or Llama-3 (Meta's tokenizer.model: 256 specials, <|begin_of_text|> added).
std::unique_ptr<ByteLevelBpeTokenizer> load_tiktoken(const std::filesystem::path& path, TiktokenFlavor flavor);

// True when the file's first line looks like "base64 rank".
bool looks_like_tiktoken(const std::filesystem::path& path);

}  // namespace tpserve::runtime
