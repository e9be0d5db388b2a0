#include "runtime/engine/ngram_draft.h"

#include <algorithm>

namespace tpserve::runtime {

std::vector<int32_t> ngram_draft(std::span<const int32_t> tokens, int count, int max_n) {
  const auto size = static_cast<int64_t>(tokens.size());
  if (count <= 0) return {};
  for (int64_t n = std::min<int64_t>(max_n, size - 1); n >= 1; --n) {
    const auto suffix = tokens.subspan(static_cast<size_t>(size - n));
    // Most recent earlier occurrence first: start positions size - n - 1 down to 0.
    for (int64_t start = size - n - 1; start >= 0; --start) {
      if (!std::equal(suffix.begin(), suffix.end(), tokens.begin() + start)) continue;
      const int64_t from = start + n;
      const int64_t end = std::min(size, from + count);
      return {tokens.begin() + from, tokens.begin() + end};
    }
  }
  return {};
}

}  // namespace tpserve::runtime
