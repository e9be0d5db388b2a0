// A per-thread cache of short pieces' BPE results, as Hugging Face tokenizers keeps one per model:
// natural text repeats its words, and a hit costs one hash and one compare where merging costs a
// merge lookup per byte. Direct-mapped (a new entry replaces whatever shared its slot), so there is
// nothing to evict and no lock: each thread has its own, and encode stays const and thread-safe.
// Entries are tagged with the model's serial number, so models never see each other's entries.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "runtime/tokenizer/bpe_tables.h"

namespace tpserve::runtime {

class PieceCache {
 public:
  static constexpr size_t kMaxBytes = 18;  // longer pieces are not cached
  static constexpr size_t kMaxIds = 8;     // nor results with more ids

  // A new serial number for a model whose contents changed.
  static uint64_t next_serial();

  // This thread's cache.
  static PieceCache& local();

  // Appends the cached ids of `piece` for model `serial` and returns true, or returns false.
  bool find(uint64_t serial, std::string_view piece, uint64_t hash, std::vector<int32_t>& out) const {
    const Entry& entry = entries_[hash & kMask];
    if (entry.serial != serial || entry.length != piece.size() || entry.tag != static_cast<uint32_t>(hash >> 32) ||
        !bytes_equal(entry.bytes, piece.data(), piece.size())) {
      return false;
    }
    out.insert(out.end(), entry.ids, entry.ids + entry.count);
    return true;
  }

  void store(uint64_t serial, std::string_view piece, uint64_t hash, const int32_t* ids, size_t count) {
    if (piece.size() > kMaxBytes || count > kMaxIds) return;
    Entry& entry = entries_[hash & kMask];
    entry.tag = static_cast<uint32_t>(hash >> 32);
    entry.serial = serial;
    entry.length = static_cast<uint8_t>(piece.size());
    entry.count = static_cast<uint8_t>(count);
    // A piece can encode to no ids (ids may then be null): memcpy's pointers must not be.
    if (!piece.empty()) std::memcpy(entry.bytes, piece.data(), piece.size());
    if (count != 0) std::memcpy(entry.ids, ids, count * sizeof(int32_t));
  }

 private:
  static constexpr size_t kEntries = 8192;  // 512 KiB a thread
  static constexpr size_t kMask = kEntries - 1;
  struct alignas(64) Entry {
    uint64_t serial = 0;  // 0: empty (serials start at 1)
    uint32_t tag = 0;     // the hash's top half (its low bits chose the slot)
    uint8_t length = 0;
    uint8_t count = 0;
    char bytes[kMaxBytes];
    int32_t ids[kMaxIds];
  };
  static_assert(sizeof(Entry) == 64);
  std::vector<Entry> entries_ = std::vector<Entry>(kEntries);
};

}  // namespace tpserve::runtime
