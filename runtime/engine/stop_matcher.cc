#include "runtime/engine/stop_matcher.h"

#include <algorithm>
#include <utility>

#include "common/check.h"

namespace tpserve::runtime {

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (const std::string& stop : stops_) TPS_CHECK(!stop.empty(), "empty stop string");
}

// Why searching only pending_ is enough: everything emitted earlier ended before the held-back
// tail, and the tail is the longest suffix that could begin a stop string, so no occurrence can
// start inside text already emitted.
StopMatch StopMatcher::push(std::string_view new_text) {
  if (stopped_) return {"", true};
  pending_.append(new_text);
  size_t first = std::string::npos;
  for (const std::string& stop : stops_) first = std::min(first, pending_.find(stop));
  if (first != std::string::npos) {
    StopMatch match{pending_.substr(0, first), true};
    pending_.clear();
    stopped_ = true;
    return match;
  }
  const size_t emit = pending_.size() - held_back_length();
  StopMatch match{pending_.substr(0, emit), false};
  pending_.erase(0, emit);
  return match;
}

std::string StopMatcher::finish() {
  std::string rest = std::move(pending_);
  pending_.clear();
  return rest;
}

// Stop strings are validated to a few hundred bytes, so the quadratic scan is small and it runs
// on a tail no longer than the longest stop string.
size_t StopMatcher::held_back_length() const {
  const std::string_view text = pending_;
  size_t longest = 0;
  for (const std::string& stop : stops_) {
    const size_t most = std::min(text.size(), stop.size() - 1);
    for (size_t length = most; length > longest; --length) {
      if (text.substr(text.size() - length) == std::string_view(stop).substr(0, length)) {
        longest = length;
        break;
      }
    }
  }
  return longest;
}

}  // namespace tpserve::runtime
