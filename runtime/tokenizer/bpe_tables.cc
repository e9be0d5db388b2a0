#include "runtime/tokenizer/bpe_tables.h"

#include <algorithm>
#include <bit>
#include <utility>

namespace tpserve::runtime {

bool TokenTable::insert(std::string_view bytes, int32_t id) {
  if (find(bytes) >= 0) return false;
  if (2 * (count_ + 1) > slots_.size()) grow();
  size_t i = hash_bytes(bytes) & mask_;
  while (slots_[i].id >= 0) i = (i + 1) & mask_;
  slots_[i] = {arena_.size(), static_cast<uint32_t>(bytes.size()), id};
  arena_.append(bytes);
  ++count_;
  return true;
}

void TokenTable::grow() {
  std::vector<Slot> old = std::exchange(slots_, std::vector<Slot>(std::max<size_t>(64, 2 * slots_.size())));
  mask_ = slots_.size() - 1;
  for (const Slot& slot : old) {
    if (slot.id < 0) continue;
    size_t i = hash_bytes(std::string_view(arena_.data() + slot.offset, slot.size)) & mask_;
    while (slots_[i].id >= 0) i = (i + 1) & mask_;
    slots_[i] = slot;
  }
}

void MergeTable::insert(int32_t left, int32_t right, Merge merge) {
  if (find(left, right) != nullptr) return;
  if (2 * (count_ + 1) > slots_.size()) grow();
  const uint64_t key = pair_key(left, right);
  size_t i = slot_of(key);
  while (slots_[i].key != kEmpty) i = (i + 1) & mask_;
  slots_[i] = {key, merge};
  ++count_;
}

void MergeTable::grow() {
  std::vector<Slot> old = std::exchange(slots_, std::vector<Slot>(std::max<size_t>(64, 2 * slots_.size())));
  mask_ = slots_.size() - 1;
  shift_ = 64 - std::countr_zero(slots_.size());
  for (const Slot& slot : old) {
    if (slot.key == kEmpty) continue;
    size_t i = slot_of(slot.key);
    while (slots_[i].key != kEmpty) i = (i + 1) & mask_;
    slots_[i] = slot;
  }
}

}  // namespace tpserve::runtime
