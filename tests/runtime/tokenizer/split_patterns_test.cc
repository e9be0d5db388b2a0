// The hand-written split matchers against PCRE2 running the same regexes (the path the tokenizer
// reference tests check against tokenizers and tiktoken): random text over an alphabet chosen for
// the patterns' corners, where the two must give the same pieces.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "runtime/tokenizer/regex_splitter.h"
#include "runtime/tokenizer/utf8.h"

namespace tpserve::runtime {
namespace {

// Letters, digits of several kinds (Nd, Nl, No), every sort of whitespace PCRE2's \s knows (\h, \v,
// \p{Z}), line breaks, apostrophes and what follows them in contractions (upper case and U+017F
// long s included), punctuation, combining marks (neither letter nor number), CJK, emoji.
const char32_t kAlphabet[] = {
    'a', 'b', 'Z', 's', 'S', 't', 'T', 'r', 'R', 'e', 'E', 'v', 'V', 'm', 'M', 'l', 'L', 'd', 'D', 0x17F,
    '\'', '\'', '\'', '0', '7', 0x0663, 0x2167, 0x00BD, 0xFF15, ' ', ' ', ' ', ' ', '\t', '\n', '\n', '\r',
    0x0B, 0x0C, 0x85, 0xA0, 0x1680, 0x180E, 0x2003, 0x2028, 0x2029, 0x202F, 0x3000, '.', ',', '!', '(', '"',
    '-', '_', 0x0301, 0x0308, 0x4F60, 0x597D, 0x30AB, 0xD55C, 0x0416, 0x05D0, 0x1F600, 0x1F44D, 0x200D,
};

std::string random_text(std::mt19937& rng) {
  std::uniform_int_distribution<size_t> length(0, 24), pick(0, std::size(kAlphabet) - 1);
  std::string text;
  for (size_t n = length(rng); n > 0; --n) utf8::append(text, kAlphabet[pick(rng)]);
  return text;
}

std::vector<std::string_view> split(const RegexSplitter& splitter, std::string_view text) {
  std::vector<std::string_view> pieces;
  splitter.split(text, pieces);
  return pieces;
}

class SplitPatternTest : public ::testing::TestWithParam<std::string_view> {};

TEST_P(SplitPatternTest, SamePiecesAsPcre2) {
  ASSERT_TRUE(known_split_pattern(GetParam()).has_value());
  RegexSplitter fast(GetParam(), "fast"), pcre2(GetParam(), "pcre2", /*use_pcre2_only=*/true);
  std::mt19937 rng(1234);
  for (int round = 0; round < 40000; ++round) {
    std::string text = random_text(rng);
    ASSERT_EQ(split(fast, text), split(pcre2, text)) << "text: \"" << text << "\"";
  }
  const std::string hand[] = {"", "'s", "don't I'LL it's 'ſ", "  \n\n  x", "a \t\r\n b", "1234567 ab12", "x   ",
                              "\xE3\x80\x80\xE3\x80\x80y", "...'s\r\n\r\nz", " !!\n", "\xC2\x85\xC2\x85 q"};
  for (const std::string& text : hand) EXPECT_EQ(split(fast, text), split(pcre2, text)) << "text: \"" << text << "\"";
}

INSTANTIATE_TEST_SUITE_P(Patterns, SplitPatternTest,
                         ::testing::Values(kGpt2SplitPattern, kQwenSplitPattern, kLlama3SplitPattern,
                                           std::string_view(R"(\p{N})"), std::string_view(R"(\p{N}+)")));

TEST(SplitPatternTest, OtherPatternsStayOnPcre2) {
  EXPECT_FALSE(known_split_pattern(R"(\p{N}{1,3})").has_value());
  EXPECT_FALSE(known_split_pattern(std::string(kQwenSplitPattern) + "|x").has_value());
}

}  // namespace
}  // namespace tpserve::runtime
