// Stop strings matched on a sequence's detokenized text stream, across token boundaries: a stop
// string may arrive split over any number of pushes ("Hel" + "lo wor" + "ld" with stop "lo w").
// The matcher holds back the longest tail of the text that could still begin a stop string, so
// nothing is emitted that a later stop would have cut. On a match it emits the text up to, not
// including, the stop string (vLLM's default, include_stop_str_in_output = false); the earliest
// match in the text wins.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tpserve::runtime {

struct StopMatch {
  std::string text;      // safe to emit now
  bool stopped = false;  // a stop string was found; the sequence is finished
};

class StopMatcher {
 public:
  // Stop strings must be non-empty (validate() in sampling_params.h checks); none = pass-through.
  explicit StopMatcher(std::vector<std::string> stops);

  // New text of the sequence. After a stop, further pushes return {"", true}.
  StopMatch push(std::string_view new_text);
  // End of the sequence without a stop string: the text still held back. Empty after a stop.
  std::string finish();

  bool stopped() const { return stopped_; }

 private:
  // Length of the longest suffix of pending_ that is a proper prefix of some stop string.
  size_t held_back_length() const;

  std::vector<std::string> stops_;
  std::string pending_;  // received, not yet emitted
  bool stopped_ = false;
};

}  // namespace tpserve::runtime
