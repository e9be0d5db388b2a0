#include "runtime/engine/block_allocator.h"

#include "common/check.h"

namespace tpserve::runtime {

BlockAllocator::BlockAllocator(int32_t num_blocks)
    : num_blocks_(num_blocks), in_use_(static_cast<size_t>(num_blocks), false) {
  TPS_CHECK(num_blocks >= 0, "negative block count {}", num_blocks);
  free_.reserve(static_cast<size_t>(num_blocks));
  for (int32_t block = num_blocks - 1; block >= 0; --block) free_.push_back(block);
}

std::optional<std::vector<int32_t>> BlockAllocator::allocate(int32_t count) {
  if (count < 0 || count > num_free()) return std::nullopt;
  std::vector<int32_t> blocks;
  blocks.reserve(static_cast<size_t>(count));
  for (int32_t i = 0; i < count; ++i) {
    blocks.push_back(free_.back());
    free_.pop_back();
    in_use_[static_cast<size_t>(blocks.back())] = true;
  }
  return blocks;
}

void BlockAllocator::release(const std::vector<int32_t>& blocks) {
  for (int32_t block : blocks) {
    TPS_CHECK(block >= 0 && block < num_blocks_ && in_use_[static_cast<size_t>(block)],
              "releasing block {} that is not allocated", block);
    in_use_[static_cast<size_t>(block)] = false;
    free_.push_back(block);
  }
}

}  // namespace tpserve::runtime
