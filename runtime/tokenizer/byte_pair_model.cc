#include "runtime/tokenizer/byte_pair_model.h"

#include <algorithm>

#include "common/check.h"
#include "runtime/tokenizer/added_tokens.h"

namespace tpserve::runtime {
namespace {

struct Symbol {
  int32_t id;    // -1 once merged into its left neighbour
  int32_t prev;  // index of the previous live symbol, -1 at the start
  int32_t next;  // index of the next live symbol, -1 at the end
};

struct Candidate {
  int32_t rank;
  int32_t pos;
  int32_t merged;
  // std::push_heap keeps the largest on top; "largest" here is lowest rank, then leftmost.
  bool operator<(const Candidate& other) const {
    return rank != other.rank ? rank > other.rank : pos > other.pos;
  }
};

}  // namespace

void BytePairModel::add_token(std::string bytes, int32_t id) {
  TPS_CHECK(is_token_id(id), "token id {} reached BytePairModel unchecked", id);
  id_limit_ = std::max(id_limit_, id + 1);
  if (bytes.size() == 1) byte_ids_[static_cast<unsigned char>(bytes[0])] = id;
  id_bytes_[id] = bytes;
  token_ids_.emplace(std::move(bytes), id);
}

void BytePairModel::add_merge(int32_t left, int32_t right, int32_t merged, int32_t rank) {
  // The first listing of a pair wins, as in tokenizers' merge map.
  merges_.emplace(pair_key(left, right), Merge{rank, merged});
}

const BytePairModel::Merge* BytePairModel::find_merge(int32_t left, int32_t right) const {
  auto it = merges_.find(pair_key(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

std::optional<int32_t> BytePairModel::find(std::string_view bytes) const {
  auto it = token_ids_.find(std::string(bytes));
  if (it == token_ids_.end()) return std::nullopt;
  return it->second;
}

const std::string* BytePairModel::bytes_of(int32_t id) const {
  auto it = id_bytes_.find(id);
  return it == id_bytes_.end() ? nullptr : &it->second;
}

void BytePairModel::encode(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (piece.size() == 1 || whole_piece_lookup_) {
    if (auto it = token_ids_.find(std::string(piece)); it != token_ids_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;
  symbols.clear();
  heap.clear();
  for (unsigned char byte : piece) {
    int32_t id = byte_ids_[byte];
    if (id < 0) continue;
    int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, -1});
    if (index > 0) symbols[index - 1].next = index;
  }
  auto push_pair = [&](int32_t pos) {
    int32_t next = symbols[pos].next;
    if (next < 0) return;
    if (const Merge* merge = find_merge(symbols[pos].id, symbols[next].id)) {
      heap.push_back({merge->rank, pos, merge->merged});
      std::push_heap(heap.begin(), heap.end());
    }
  };
  for (int32_t pos = 0; pos + 1 < static_cast<int32_t>(symbols.size()); ++pos) push_pair(pos);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.pos];
    if (left.id < 0 || left.next < 0) continue;
    const Merge* merge = find_merge(left.id, symbols[left.next].id);
    if (merge == nullptr || merge->merged != top.merged || merge->rank != top.rank) continue;  // stale
    Symbol& right = symbols[left.next];
    left.id = top.merged;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    right.id = -1;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
  for (int32_t pos = symbols.empty() ? -1 : 0; pos >= 0; pos = symbols[pos].next) out.push_back(symbols[pos].id);
}

}  // namespace tpserve::runtime
