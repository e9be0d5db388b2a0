// Stop strings across token boundaries on the detokenized stream.
#include "runtime/engine/stop_matcher.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tpserve::runtime {
namespace {

std::string push_all(StopMatcher& matcher, const std::vector<std::string>& pieces, bool* stopped) {
  std::string text;
  for (const std::string& piece : pieces) {
    const StopMatch match = matcher.push(piece);
    text += match.text;
    *stopped = match.stopped;
    if (match.stopped) break;
  }
  return text;
}

TEST(StopMatcher, MatchesAcrossTokenBoundaries) {
  StopMatcher matcher({"lo w"});
  StopMatch first = matcher.push("Hel");
  EXPECT_EQ(first.text, "He");  // "l" could begin "lo w"
  EXPECT_FALSE(first.stopped);
  StopMatch second = matcher.push("lo wor");
  EXPECT_EQ(second.text, "l");
  EXPECT_TRUE(second.stopped);
  EXPECT_TRUE(matcher.push("ld").stopped);
  EXPECT_EQ(matcher.finish(), "");
}

TEST(StopMatcher, HeldBackPartialMatchReleasedAtFinish) {
  StopMatcher matcher({"</end>"});
  bool stopped = true;
  EXPECT_EQ(push_all(matcher, {"a <", "/en"}, &stopped), "a ");
  EXPECT_FALSE(stopped);
  EXPECT_EQ(matcher.push("x").text, "</enx");  // the partial match broke
  EXPECT_EQ(matcher.push("</").text, "");
  EXPECT_EQ(matcher.finish(), "</");
}

TEST(StopMatcher, EarliestOfSeveralStopsWins) {
  StopMatcher matcher({"world", "o w", "xyz"});
  bool stopped = false;
  EXPECT_EQ(push_all(matcher, {"hell", "o wo", "rld"}, &stopped), "hell");
  EXPECT_TRUE(stopped);
}

TEST(StopMatcher, StopAtTheVeryStart) {
  StopMatcher matcher({"###"});
  bool stopped = false;
  EXPECT_EQ(push_all(matcher, {"#", "##", "after"}, &stopped), "");
  EXPECT_TRUE(stopped);
}

TEST(StopMatcher, NoStopsPassThrough) {
  StopMatcher matcher({});
  EXPECT_EQ(matcher.push("anything").text, "anything");
  EXPECT_EQ(matcher.finish(), "");
}

TEST(StopMatcher, RepeatedPrefixCharacters) {
  // "aab" inside "aaab": a naive matcher that restarts after a failed partial match misses it.
  StopMatcher matcher({"aab"});
  bool stopped = false;
  EXPECT_EQ(push_all(matcher, {"x", "a", "a", "a", "b", "c"}, &stopped), "xa");
  EXPECT_TRUE(stopped);
}

TEST(StopMatcher, MultibyteTextSplitMidCharacterIsHeldWhole) {
  // "é" is 0xC3 0xA9; a stop "é!" must not let half of "é" out before it is decided.
  StopMatcher matcher({"\xC3\xA9!"});
  EXPECT_EQ(matcher.push("caf\xC3").text, "caf");
  EXPECT_EQ(matcher.push("\xA9").text, "");
  const StopMatch match = matcher.push("!!");
  EXPECT_TRUE(match.stopped);
  EXPECT_EQ(match.text, "");
}

}  // namespace
}  // namespace tpserve::runtime
