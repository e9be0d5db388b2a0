// The BPE merge loop shared by tokenizer.json (byte-level BPE) and tiktoken rank files: tokens are
// raw byte strings, a piece starts as one token per byte and the adjacent pair with the lowest rank
// merges first (leftmost on ties), until no known pair is left. A heap over candidate pairs makes a
// piece of n bytes cost O(n log n), so 1 MB of one repeated character stays fast; short pieces (nearly
// all of them) take a plain scan over an array instead, which is faster below a few dozen symbols.
#pragma once

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/tokenizer/bpe_tables.h"
#include "runtime/tokenizer/piece_cache.h"

namespace tpserve::runtime {

class BytePairModel {
 public:
  BytePairModel() { std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1); }

  // Registers token `id` (0 <= id < kTokenIdLimit, checked by the file readers) with these raw
  // bytes. Single bytes become the starting symbols. Ids may be sparse (trimmed vocabularies keep
  // their real ids): storage grows with the tokens, never with the id values. When two ids have the
  // same bytes, encode uses the first.
  void add_token(std::string bytes, int32_t id);

  // `left` + `right` -> `merged`, applied in increasing `rank`. The first listing of a pair wins.
  void add_merge(int32_t left, int32_t right, int32_t merged, int32_t rank) {
    merges_.insert(left, right, {rank, merged});
    serial_ = PieceCache::next_serial();
  }

  // tiktoken's rule instead of a merge list: two adjacent symbols merge when their bytes together
  // are a token, the lowest id first (a tiktoken file's ids are its ranks). The same merges as
  // registering every cut of every token, without the million-entry table. Requires every single
  // byte to be a token (true of tiktoken files; has_every_byte() tells).
  void set_merges_by_rank() {
    merges_by_rank_ = true;
    serial_ = PieceCache::next_serial();
  }
  bool has_every_byte() const {
    return std::all_of(std::begin(byte_ids_), std::end(byte_ids_), [](int32_t id) { return id >= 0; });
  }

  // Look the whole piece up first and use it when it is a token: tokenizers' `ignore_merges`
  // (Llama-3) and tiktoken's encode (Qwen v1) both do this before merging.
  void set_whole_piece_lookup(bool on) {
    whole_piece_lookup_ = on;
    serial_ = PieceCache::next_serial();
  }

  // Appends the ids of `piece` (raw bytes). Bytes with no token of their own are dropped, as
  // tokenizers' BPE does without an unk token.
  void encode(std::string_view piece, std::vector<int32_t>& out) const;

  std::optional<int32_t> find(std::string_view bytes) const {
    int32_t id = token_ids_.find(bytes);
    return id < 0 ? std::nullopt : std::optional<int32_t>(id);
  }
  // Raw bytes of `id`, or nullptr when the model has no such token.
  const std::string* bytes_of(int32_t id) const;
  // One past the largest id (ids may be sparse).
  int32_t id_limit() const { return id_limit_; }
  size_t merge_count() const { return merges_.size(); }

 private:
  // The merge loop once the piece is one symbol per byte in `symbols`.
  void merge_short(std::string_view piece, std::vector<int32_t>& symbols) const;
  void merge_long(std::string_view piece, std::vector<int32_t>& symbols) const;
  // The merge of adjacent symbols `left` and `right`, whose bytes are piece[begin, end) together.
  bool find_merge(int32_t left, int32_t right, std::string_view piece, size_t begin, size_t end,
                  MergeTable::Merge& merge) const {
    if (merges_by_rank_) {
      int32_t id = token_ids_.find(piece.substr(begin, end - begin));
      merge = {id, id};
      return id >= 0;
    }
    const MergeTable::Merge* found = merges_.find(left, right);
    if (found != nullptr) merge = *found;
    return found != nullptr;
  }

  TokenTable token_ids_;
  std::unordered_map<int32_t, std::string> id_bytes_;  // for decode
  int32_t id_limit_ = 0;
  int32_t byte_ids_[256];
  MergeTable merges_;
  bool whole_piece_lookup_ = false;
  bool merges_by_rank_ = false;
  // Names this model's entries in the per-thread PieceCache; a new one after every change, so
  // results cached before it are never reused.
  uint64_t serial_ = PieceCache::next_serial();
};

}  // namespace tpserve::runtime
