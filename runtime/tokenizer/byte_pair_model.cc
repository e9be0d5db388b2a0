#include "runtime/tokenizer/byte_pair_model.h"

#include <algorithm>
#include <climits>

#include "common/check.h"
#include "runtime/tokenizer/added_tokens.h"

namespace tpserve::runtime {
namespace {

// Up to this many symbols a piece merges by scanning an array for the lowest rank (tiktoken's
// loop, quadratic but with no heap and no links); longer ones use the heap.
constexpr size_t kShortPiece = 64;

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
  if (token_ids_.insert(bytes, id) && bytes.size() == 1) byte_ids_[static_cast<unsigned char>(bytes[0])] = id;
  id_bytes_[id] = std::move(bytes);
  serial_ = PieceCache::next_serial();
}

const std::string* BytePairModel::bytes_of(int32_t id) const {
  auto it = id_bytes_.find(id);
  return it == id_bytes_.end() ? nullptr : &it->second;
}

void BytePairModel::encode(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (piece.size() == 1) {
    if (int32_t id = token_ids_.find(piece); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  // The cache first, even before the whole-piece lookup: it is small enough to stay in the CPU's
  // caches, where the token table (megabytes) is a memory access away.
  PieceCache& cache = PieceCache::local();
  const bool cacheable = piece.size() <= PieceCache::kMaxBytes;
  const uint64_t hash = hash_bytes(piece);
  if (cacheable && cache.find(serial_, piece, hash, out)) return;
  if (whole_piece_lookup_) {
    if (int32_t id = token_ids_.find(piece, hash); id >= 0) {
      if (cacheable) cache.store(serial_, piece, hash, &id, 1);
      out.push_back(id);
      return;
    }
  }
  thread_local std::vector<int32_t> symbols;
  symbols.clear();
  for (unsigned char byte : piece) {
    if (byte_ids_[byte] >= 0) symbols.push_back(byte_ids_[byte]);
  }
  if (symbols.size() <= kShortPiece) {
    merge_short(piece, symbols);
  } else {
    merge_long(piece, symbols);
  }
  if (cacheable) cache.store(serial_, piece, hash, symbols.data(), symbols.size());
  out.insert(out.end(), symbols.begin(), symbols.end());
}

// Symbol i covers piece[starts[i], starts[i + 1]) (by-rank models have a symbol per byte to start
// with; a merge-list model does not look at the bytes, so its dropped bytes do not matter).
void BytePairModel::merge_short(std::string_view piece, std::vector<int32_t>& symbols) const {
  // ranks[i] / merged[i]: the merge of symbols[i] and symbols[i + 1], INT_MAX when there is none.
  int32_t ranks[kShortPiece], merged[kShortPiece];
  uint32_t starts[kShortPiece + 1];
  size_t n = symbols.size();
  int32_t* ids = symbols.data();
  for (size_t i = 0; i <= n; ++i) starts[i] = static_cast<uint32_t>(i);
  auto look = [&](size_t i) {
    MergeTable::Merge merge;
    bool found = find_merge(ids[i], ids[i + 1], piece, starts[i], starts[i + 2], merge);
    ranks[i] = found ? merge.rank : INT_MAX;
    merged[i] = found ? merge.merged : -1;
  };
  for (size_t i = 0; i + 1 < n; ++i) look(i);
  while (n > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < n; ++i) {
      if (ranks[i] < ranks[best]) best = i;  // strict: the leftmost of equal ranks
    }
    if (ranks[best] == INT_MAX) break;
    ids[best] = merged[best];
    // Drop symbol best + 1 and the pair it started.
    for (size_t i = best + 1; i + 1 < n; ++i) {
      ids[i] = ids[i + 1];
      ranks[i] = ranks[i + 1];
      merged[i] = merged[i + 1];
    }
    for (size_t i = best + 1; i < n; ++i) starts[i] = starts[i + 1];
    --n;
    if (best + 1 < n) look(best);
    if (best > 0) look(best - 1);
  }
  symbols.resize(n);
}

void BytePairModel::merge_long(std::string_view piece, std::vector<int32_t>& ids) const {
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;
  symbols.clear();
  heap.clear();
  for (int32_t id : ids) {
    auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, -1});
    if (index > 0) symbols[index - 1].next = index;
  }
  // A live symbol at index i covers piece[i, index of the next live symbol), as in merge_short.
  auto end_of = [&](int32_t pos) {
    int32_t next = symbols[pos].next;
    return next < 0 ? symbols.size() : static_cast<size_t>(next);
  };
  auto lookup = [&](int32_t pos, MergeTable::Merge& merge) {
    int32_t next = symbols[pos].next;
    return find_merge(symbols[pos].id, symbols[next].id, piece, pos, end_of(next), merge);
  };
  auto push_pair = [&](int32_t pos) {
    if (symbols[pos].next < 0) return;
    MergeTable::Merge merge;
    if (lookup(pos, merge)) {
      heap.push_back({merge.rank, pos, merge.merged});
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
    MergeTable::Merge merge;
    if (!lookup(top.pos, merge) || merge.merged != top.merged || merge.rank != top.rank) continue;  // stale
    Symbol& right = symbols[left.next];
    left.id = top.merged;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    right.id = -1;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
  ids.clear();
  for (int32_t pos = symbols.empty() ? -1 : 0; pos >= 0; pos = symbols[pos].next) ids.push_back(symbols[pos].id);
}

}  // namespace tpserve::runtime
