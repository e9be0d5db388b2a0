// Added tokens (tokenizers' AddedVocabulary; Qwen v1's and Llama-3's special tokens; the family
// specials of SentencePiece models): matched in the raw text before normalization and BPE, leftmost
// first and longest on ties, each match becoming its own id.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tpserve::runtime {

// Token ids that tokenizer files may use: 0 <= id < 2^24. Far above any released vocabulary (the
// largest seed-family ones are ~152k; Gemma's 256k) and small enough that a vocabulary size (the
// largest id + 1) never overflows int32. Readers refuse other ids naming the file and field.
constexpr int64_t kTokenIdLimit = int64_t{1} << 24;
inline bool is_token_id(int64_t id) { return id >= 0 && id < kTokenIdLimit; }

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = true;  // skipped by decode(skip_special_tokens = true)
  bool lstrip = false;  // the match swallows whitespace on its left
  bool rstrip = false;  // ... and on its right
};

// A stretch of input: either plain text for the model, or one added token.
struct TextSegment {
  std::string_view text;
  int32_t added_id = -1;  // >= 0: an added token
};

class AddedTokens {
 public:
  void add(AddedToken token);
  bool empty() const { return tokens_.empty(); }

  // Splits `text` into plain stretches and added tokens, in order.
  void split(std::string_view text, std::vector<TextSegment>& out) const;

  const AddedToken* by_id(int32_t id) const;
  const AddedToken* by_content(std::string_view content) const;
  const std::vector<AddedToken>& all() const { return tokens_; }

 private:
  std::vector<AddedToken> tokens_;
  std::unordered_map<int32_t, size_t> index_by_id_;
  std::unordered_map<std::string, size_t> index_by_content_;
  // For each first byte, the tokens starting with it, in the order added. Not kept sorted: sorting
  // on every add made loading n added tokens O(n^2 log n) (Llama-3's 256 reserved specials all
  // start with '<'), and split() scans the whole bucket whenever nothing matches anyway.
  std::vector<size_t> by_first_byte_[256];
};

}  // namespace tpserve::runtime
