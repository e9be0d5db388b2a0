// The BPE merge loop shared by tokenizer.json (byte-level BPE) and tiktoken rank files: tokens are
// raw byte strings, a piece starts as one token per byte and the adjacent pair with the lowest rank
// merges first (leftmost on ties), until no known pair is left. A heap over candidate pairs makes a
// piece of n bytes cost O(n log n), so 1 MB of one repeated character stays fast.
#pragma once

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tpserve::runtime {

class BytePairModel {
 public:
  // Registers token `id` (0 <= id < kTokenIdLimit, checked by the file readers) with these raw
  // bytes. Single bytes become the starting symbols. Ids may be sparse (trimmed vocabularies keep
  // their real ids): storage grows with the tokens, never with the id values.
  void add_token(std::string bytes, int32_t id);

  // `left` + `right` -> `merged`, applied in increasing `rank`.
  void add_merge(int32_t left, int32_t right, int32_t merged, int32_t rank);

  // Look the whole piece up first and use it when it is a token: tokenizers' `ignore_merges`
  // (Llama-3) and tiktoken's encode (Qwen v1) both do this before merging.
  void set_whole_piece_lookup(bool on) { whole_piece_lookup_ = on; }

  // Appends the ids of `piece` (raw bytes). Bytes with no token of their own are dropped, as
  // tokenizers' BPE does without an unk token.
  void encode(std::string_view piece, std::vector<int32_t>& out) const;

  std::optional<int32_t> find(std::string_view bytes) const;
  // Raw bytes of `id`, or nullptr when the model has no such token.
  const std::string* bytes_of(int32_t id) const;
  // One past the largest id (ids may be sparse).
  int32_t id_limit() const { return id_limit_; }
  size_t merge_count() const { return merges_.size(); }

 private:
  struct Merge {
    int32_t rank;
    int32_t merged;
  };
  const Merge* find_merge(int32_t left, int32_t right) const;
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }

  std::unordered_map<std::string, int32_t> token_ids_;
  std::unordered_map<int32_t, std::string> id_bytes_;
  int32_t id_limit_ = 0;
  int32_t byte_ids_[256];
  std::unordered_map<uint64_t, Merge> merges_;
  bool whole_piece_lookup_ = false;

 public:
  BytePairModel() { std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1); }
};

}  // namespace tpserve::runtime
