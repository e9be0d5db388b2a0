// Fixed-size KV blocks handed out to sequences. Rank 0 owns the allocator; the block tables it
// produces travel in the step plan, so every rank's cache has the same layout.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace tpserve::runtime {

class BlockAllocator {
 public:
  explicit BlockAllocator(int32_t num_blocks);

  int32_t num_blocks() const { return num_blocks_; }
  int32_t num_free() const { return static_cast<int32_t>(free_.size()); }
  int32_t num_used() const { return num_blocks_ - num_free(); }

  // `count` blocks, or nullopt (and nothing taken) when fewer are free.
  std::optional<std::vector<int32_t>> allocate(int32_t count);
  // Returns blocks; each must currently be allocated.
  void release(const std::vector<int32_t>& blocks);

 private:
  int32_t num_blocks_;
  std::vector<int32_t> free_;  // a stack: lowest ids are handed out first
  std::vector<bool> in_use_;
};

// Blocks needed to hold `tokens` positions.
inline int32_t blocks_for(int64_t tokens, int32_t block_size) {
  return static_cast<int32_t>((tokens + block_size - 1) / block_size);
}

}  // namespace tpserve::runtime
