// The two lookups BPE makes for every piece of text, as flat open-addressing tables: token bytes ->
// id, and (left id, right id) -> merge. std::unordered_map allocates a node per entry and follows a
// pointer per probe; with Qwen's ~150k tokens and ~1M merges that is a cache miss per lookup, and
// the lookups were most of encode's time. Here a probe reads one contiguous slot (linear probing,
// load factor at most 1/2) and no lookup allocates.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace tpserve::runtime {

// A fast 64-bit hash of a short byte string (pieces average ~5 bytes): eight bytes at a time, and
// the last up-to-eight bytes read with fixed-size loads, overlapping (wyhash's trick), so that no
// variable-length copy is needed. Equal strings hash equal; the tables compare the bytes anyway.
inline uint64_t hash_bytes(std::string_view bytes) {
  const char* p = bytes.data();
  const size_t n = bytes.size();
  uint64_t h = 0x9E3779B97F4A7C15ULL ^ (n * 0xC2B2AE3D27D4EB4FULL);
  auto mix = [&h](uint64_t word) {
    h = (h ^ word) * 0xFF51AFD7ED558CCDULL;
    h ^= h >> 32;
  };
  auto load8 = [](const char* at) {
    uint64_t word;
    std::memcpy(&word, at, 8);
    return word;
  };
  auto load4 = [](const char* at) {
    uint32_t word;
    std::memcpy(&word, at, 4);
    return static_cast<uint64_t>(word);
  };
  if (n >= 8) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) mix(load8(p + i));
    if (i < n) mix(load8(p + n - 8));
  } else if (n >= 4) {
    mix(load4(p) | (load4(p + n - 4) << 32));
  } else if (n > 0) {
    mix(static_cast<uint64_t>(static_cast<unsigned char>(p[0])) |
        (static_cast<uint64_t>(static_cast<unsigned char>(p[n / 2])) << 8) |
        (static_cast<uint64_t>(static_cast<unsigned char>(p[n - 1])) << 16));
  }
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ULL;
  return h ^ (h >> 32);
}

// Equality of two byte strings of length n, inline: most are a few bytes long, where a call to
// memcmp costs more than the compare.
inline bool bytes_equal(const char* a, const char* b, size_t n) {
  auto load8 = [](const char* p) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    return word;
  };
  auto load4 = [](const char* p) {
    uint32_t word;
    std::memcpy(&word, p, 4);
    return word;
  };
  if (n >= 8) {
    for (size_t i = 0; i + 8 <= n; i += 8) {
      if (load8(a + i) != load8(b + i)) return false;
    }
    return load8(a + n - 8) == load8(b + n - 8);  // the tail, overlapping the last full word
  }
  if (n >= 4) return load4(a) == load4(b) && load4(a + n - 4) == load4(b + n - 4);
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

// Token bytes -> id. The bytes live in one arena; a slot holds their offset, length and the id.
class TokenTable {
 public:
  // Adds `bytes` -> `id` unless the bytes are already there (the first listing wins). Returns
  // whether it was added.
  bool insert(std::string_view bytes, int32_t id);
  // The id of `bytes`, or -1.
  int32_t find(std::string_view bytes) const { return find(bytes, hash_bytes(bytes)); }
  // The same, with hash_bytes(bytes) already at hand.
  int32_t find(std::string_view bytes, uint64_t hash) const {
    if (slots_.empty()) return -1;
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.id < 0) return -1;
      if (slot.size == bytes.size() && bytes_equal(arena_.data() + slot.offset, bytes.data(), bytes.size())) {
        return slot.id;
      }
    }
  }
  size_t size() const { return count_; }

 private:
  struct Slot {
    uint64_t offset = 0;
    uint32_t size = 0;
    int32_t id = -1;  // -1: empty
  };
  void grow();
  std::string arena_;
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t count_ = 0;
};

// (left id, right id) -> (rank, merged id).
class MergeTable {
 public:
  struct Merge {
    int32_t rank;
    int32_t merged;
  };
  // Adds the merge unless the pair is already there (the first listing wins, as in tokenizers'
  // merge map).
  void insert(int32_t left, int32_t right, Merge merge);
  // The merge of the pair, or nullptr.
  const Merge* find(int32_t left, int32_t right) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = pair_key(left, right);
    for (size_t i = slot_of(key);; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.key == key) return &slot.merge;
      if (slot.key == kEmpty) return nullptr;
    }
  }
  size_t size() const { return count_; }

 private:
  // Ids are non-negative, so no real pair has all 64 bits set.
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  struct Slot {
    uint64_t key = kEmpty;
    Merge merge{};
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  size_t slot_of(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ULL) >> shift_; }  // the top bits
  void grow();
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  int shift_ = 64;
  size_t count_ = 0;
};

}  // namespace tpserve::runtime
