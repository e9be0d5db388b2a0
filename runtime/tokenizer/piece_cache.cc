#include "runtime/tokenizer/piece_cache.h"

#include <atomic>

namespace tpserve::runtime {

uint64_t PieceCache::next_serial() {
  static std::atomic<uint64_t> counter{0};
  return ++counter;
}

PieceCache& PieceCache::local() {
  thread_local PieceCache cache;
  return cache;
}

}  // namespace tpserve::runtime
