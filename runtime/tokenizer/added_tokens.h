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
  // A byte trie of the contents: node 0 is the root, whose children are an array (plain text costs
  // one load per byte); deeper edges are hashed. A node's token (an index into tokens_, -1 for
  // none) is the one whose content spells the path to it. split() walks it once per position, so
  // matching costs the length of the longest candidate, not the number of tokens (comparing every
  // token with the same first byte took 1.2-1.9 s for 1 MB of '<' with Llama-3's 256 specials).
  static uint64_t edge_key(uint64_t node, char byte) { return node << 8 | static_cast<unsigned char>(byte); }
  std::vector<int64_t> token_at_node_ = {-1};
  uint64_t root_children_[256] = {};  // 0: no token starts with that byte
  std::unordered_map<uint64_t, uint64_t> children_;
};

}  // namespace tpserve::runtime
