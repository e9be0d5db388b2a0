#include "runtime/engine/block_allocator.h"

#include "common/check.h"
#include "runtime/engine/splitmix.h"

namespace tpserve::runtime {

BlockKey block_key(uint64_t parent, std::span<const int32_t> tokens) {
  BlockKey key;
  key.parent = parent;
  key.tokens.assign(tokens.begin(), tokens.end());
  uint64_t hash = mix64(parent + kSplitmixGamma);
  for (int32_t token : tokens) hash = mix64(hash ^ (static_cast<uint32_t>(token) + kSplitmixGamma));
  key.hash = hash;
  return key;
}

BlockAllocator::BlockAllocator(int32_t num_blocks)
    : num_blocks_(num_blocks),
      refs_(static_cast<size_t>(num_blocks), 0),
      evictable_at_(static_cast<size_t>(num_blocks)),
      key_of_(static_cast<size_t>(num_blocks)) {
  TPS_CHECK(num_blocks >= 0, "negative block count {}", num_blocks);
  free_.reserve(static_cast<size_t>(num_blocks));
  for (int32_t block = num_blocks - 1; block >= 0; --block) free_.push_back(block);
}

void BlockAllocator::forget(int32_t block) {
  auto& key = key_of_[static_cast<size_t>(block)];
  if (!key) return;
  cached_.erase(*key);
  key.reset();
}

std::optional<std::vector<int32_t>> BlockAllocator::allocate(int32_t count) {
  if (count < 0 || count > num_free()) return std::nullopt;
  std::vector<int32_t> blocks;
  blocks.reserve(static_cast<size_t>(count));
  for (int32_t i = 0; i < count; ++i) {
    int32_t block = 0;
    if (!free_.empty()) {
      block = free_.back();
      free_.pop_back();
    } else {
      block = evictable_.front();
      evictable_.pop_front();
      forget(block);
    }
    refs_[static_cast<size_t>(block)] = 1;
    blocks.push_back(block);
  }
  return blocks;
}

void BlockAllocator::release(std::span<const int32_t> blocks) {
  for (int32_t block : blocks) {
    TPS_CHECK(block >= 0 && block < num_blocks_ && refs_[static_cast<size_t>(block)] > 0,
              "releasing block {} that is not allocated", block);
    const auto index = static_cast<size_t>(block);
    if (--refs_[index] > 0) continue;
    if (key_of_[index]) {
      evictable_at_[index] = evictable_.insert(evictable_.end(), block);
    } else {
      free_.push_back(block);
    }
  }
}

std::optional<int32_t> BlockAllocator::take_cached(const BlockKey& key) {
  const auto found = cached_.find(key.hash);
  if (found == cached_.end()) return std::nullopt;
  const auto& [held, block] = found->second;
  if (held.parent != key.parent || held.tokens != key.tokens) return std::nullopt;  // a collision
  const auto index = static_cast<size_t>(block);
  if (refs_[index]++ == 0) evictable_.erase(evictable_at_[index]);
  return block;
}

void BlockAllocator::publish(int32_t block, const BlockKey& key) {
  const auto index = static_cast<size_t>(block);
  TPS_CHECK(block >= 0 && block < num_blocks_ && refs_[index] > 0,
            "publishing block {} that is not in use", block);
  if (key_of_[index] || cached_.contains(key.hash)) return;
  cached_.emplace(key.hash, std::make_pair(key, block));
  key_of_[index] = key.hash;
}

}  // namespace tpserve::runtime
