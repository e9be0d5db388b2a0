// Fixed-size KV blocks handed out to sequences, reference-counted, with a cache of full blocks
// keyed by their contents (prefix caching). Rank 0 owns the allocator; the block tables it
// produces travel in the step plan, so every rank's cache has the same layout and the same hits.
//
// A block is in one of three states:
//   in use     referenced by at least one sequence (several share a cached prefix block);
//   cached     no reference, but it still holds a published prefix: a later request with the same
//              prefix takes it back; otherwise it is evicted, least recently released first, when
//              fresh blocks run out;
//   free       no reference and no contents worth keeping.
// num_free() counts cached blocks too: both can be handed out.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

namespace tpserve::runtime {

// What a full block holds: its tokens and, through `parent`, everything before them. The key of
// block i of a sequence is the hash of (key of block i-1, block i's tokens); block 0's parent is
// the adapter identity, so two adapters never share K/V.
struct BlockKey {
  uint64_t hash = 0;
  uint64_t parent = 0;
  std::vector<int32_t> tokens;
};

BlockKey block_key(uint64_t parent, std::span<const int32_t> tokens);

class BlockAllocator {
 public:
  explicit BlockAllocator(int32_t num_blocks);

  int32_t num_blocks() const { return num_blocks_; }
  // Blocks that allocate() can hand out: free ones and unreferenced cached ones.
  int32_t num_free() const { return static_cast<int32_t>(free_.size() + evictable_.size()); }
  int32_t num_used() const { return num_blocks_ - num_free(); }
  // Blocks holding a published prefix, in use or not.
  int32_t num_cached() const { return static_cast<int32_t>(cached_.size()); }
  int32_t ref_count(int32_t block) const { return refs_[static_cast<size_t>(block)]; }
  bool is_cached(int32_t block) const { return key_of_[static_cast<size_t>(block)].has_value(); }

  // `count` fresh blocks, one reference each, or nullopt (and nothing taken) when fewer can be
  // had. Free blocks go first; then cached ones, least recently released first, forgetting their
  // contents.
  std::optional<std::vector<int32_t>> allocate(int32_t count);
  // Drops one reference from each block. One left with none goes back to the free list, or, when
  // it holds a published prefix, to the most recent end of the eviction order. Release a
  // sequence's blocks last to first, so the tail of a prefix is evicted before its head.
  void release(std::span<const int32_t> blocks);

  // The cached block holding exactly `key` (tokens and parent compared, not just the hash), with
  // a reference taken; nullopt on a miss.
  std::optional<int32_t> take_cached(const BlockKey& key);
  // `block` (in use) now holds `key`'s K/V. When another block already holds it, nothing changes
  // (the first copy stays the one later requests find).
  void publish(int32_t block, const BlockKey& key);

 private:
  void forget(int32_t block);

  int32_t num_blocks_;
  std::vector<int32_t> free_;  // a stack: lowest ids are handed out first
  std::vector<int32_t> refs_;
  std::list<int32_t> evictable_;  // unreferenced cached blocks, least recently released first
  std::vector<std::list<int32_t>::iterator> evictable_at_;
  std::vector<std::optional<uint64_t>> key_of_;  // the hash a cached block is filed under
  std::unordered_map<uint64_t, std::pair<BlockKey, int32_t>> cached_;
};

// Blocks needed to hold `tokens` positions.
inline int32_t blocks_for(int64_t tokens, int32_t block_size) {
  return static_cast<int32_t>((tokens + block_size - 1) / block_size);
}

}  // namespace tpserve::runtime
