// tiktoken's merge rule on hand-made rank files, with ids worked out by hand from tiktoken's
// algorithm (take a piece whole when it is a token; else merge the adjacent pair whose bytes
// together have the lowest rank, leftmost first): the merge-by-rank path (files with every byte,
// as real ones are) and the merge-list path (a file without one byte), short and long pieces.
#include <gtest/gtest.h>

#include <fstream>

#include "runtime/tokenizer/tokenizer.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

std::string base64(const std::string& bytes) {
  static const char kDigits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    for (int k = 3; k >= 0; --k) out += kDigits[(v >> (6 * k)) & 63];
  }
  if (bytes.size() - i == 1) {
    uint32_t v = uint8_t(bytes[i]) << 16;
    out += std::string{kDigits[v >> 18], kDigits[(v >> 12) & 63], '=', '='};
  } else if (bytes.size() - i == 2) {
    uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8);
    out += std::string{kDigits[v >> 18], kDigits[(v >> 12) & 63], kDigits[(v >> 6) & 63], '='};
  }
  return out;
}

// Every byte except `missing` (-1: none) in order, then "ab", "bc", "abc", "abab"; returns the id
// of the first of those four.
int32_t write_ranks(const std::filesystem::path& dir, int missing) {
  std::ofstream out(dir / "qwen.tiktoken", std::ios::binary);
  int32_t rank = 0;
  for (int b = 0; b < 256; ++b) {
    if (b != missing) out << base64(std::string(1, static_cast<char>(b))) << " " << rank++ << "\n";
  }
  const int32_t first = rank;
  for (const char* token : {"ab", "bc", "abc", "abab"}) out << base64(token) << " " << rank++ << "\n";
  return first;
}

void expect_tiktoken_merges(int missing) {
  testing::ScratchDir dir("tiktoken_merge");
  const int32_t ab = write_ranks(dir.path(), missing), bc = ab + 1, abc = ab + 2, abab = ab + 3;
  const int32_t d = missing >= 0 && missing < 'd' ? 'd' - 1 : 'd';
  auto tokenizer = Tokenizer::load(dir.path());
  EXPECT_EQ(tokenizer->encode("abc", false), (std::vector<int32_t>{abc}));      // whole
  EXPECT_EQ(tokenizer->encode("abcd", false), (std::vector<int32_t>{abc, d}));  // ab, then abc
  EXPECT_EQ(tokenizer->encode("bcab", false), (std::vector<int32_t>{bc, ab}));  // ab (lower rank) first
  std::string short_piece, long_piece;
  for (int i = 0; i < 20; ++i) short_piece += "ab";  // 40 bytes: the array scan
  for (int i = 0; i < 40; ++i) long_piece += "ab";   // 80 bytes: the heap
  EXPECT_EQ(tokenizer->encode(short_piece, false), std::vector<int32_t>(10, abab));
  EXPECT_EQ(tokenizer->encode(long_piece, false), std::vector<int32_t>(20, abab));
  // The last ab, then ab+c (abc ranks before abab), then abab pairs from the left: one ab is left over.
  std::vector<int32_t> ids(19, abab);
  ids.push_back(ab);
  ids.push_back(abc);
  EXPECT_EQ(tokenizer->encode(long_piece + "c", false), ids);
}

TEST(TiktokenMergeTest, MergeByRankWhenEveryByteIsAToken) { expect_tiktoken_merges(-1); }

TEST(TiktokenMergeTest, MergeListWhenAByteIsMissing) { expect_tiktoken_merges('z'); }

}  // namespace
}  // namespace tpserve::runtime
