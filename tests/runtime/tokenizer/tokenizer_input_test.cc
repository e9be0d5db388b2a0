// Bad input and hard input: invalid UTF-8, malformed tokenizer files, ids outside the vocabulary,
// NFC by hand-computed cases, streaming across split characters, and linear time on long runs.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>

#include "common/error.h"
#include "runtime/tokenizer/added_tokens.h"
#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/unicode_nfc.h"
#include "runtime/tokenizer/utf8.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

namespace fs = std::filesystem;

fs::path fixture(const std::string& name) { return testing::fixtures_dir() / "tokenizers" / name; }

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

void write_file(const fs::path& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

TEST(Utf8Test, InvalidInputNamesTheByteOffset) {
  auto tokenizer = Tokenizer::load(fixture("tiny_bpe"));
  std::string message = error_of([&] { tokenizer->encode("hello \xC3\x28 world"); });
  EXPECT_NE(message.find("invalid UTF-8"), std::string::npos) << message;
  EXPECT_NE(message.find("byte offset 6"), std::string::npos) << message;
  for (std::string bad : {"\xED\xA0\x80", "\xC0\xAF", "\xF4\x90\x80\x80", "ab\xE4\xB8", "\x80"}) {
    EXPECT_THROW(tokenizer->encode(bad), Error) << bad;
  }
}

TEST(Utf8Test, RepairAndCompletePrefix) {
  EXPECT_EQ(utf8::repair("a\xE4\xB8" "b"), "a\xEF\xBF\xBD" "b");  // one U+FFFD per maximal subpart
  EXPECT_EQ(utf8::repair("\xFF\xFE"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(utf8::complete_prefix_length("ab\xE4\xB8"), 2u);        // 你 missing its last byte
  EXPECT_EQ(utf8::complete_prefix_length("ab\xE4\xB8\xAD"), 5u);
  EXPECT_EQ(utf8::complete_prefix_length("\xF0\x9F\x98"), 0u);      // 😀 missing one byte
  EXPECT_EQ(utf8::complete_prefix_length("a\xC3\x28"), 3u);         // invalid, not pending
}

TEST(NfcTest, HandComputedCases) {
  EXPECT_EQ(to_nfc("e\xCC\x81"), "\xC3\xA9");                          // e + U+0301 -> é
  EXPECT_EQ(to_nfc("\xE2\x84\xAB"), "\xC3\x85");                       // U+212B ANGSTROM SIGN -> Å
  EXPECT_EQ(to_nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");  // jamo ᄀ ᅡ ᆨ -> 각
  EXPECT_EQ(to_nfc("o\xCC\x82\xCC\xA3"), "\xE1\xBB\x99");               // o + ̂ + ̣ -> ộ (reordered)
  EXPECT_EQ(to_nfc("\xEF\xAC\x81"), "\xEF\xAC\x81");                    // ﬁ is compatibility-only
  EXPECT_TRUE(is_nfc_quick("plain ASCII and 中文 and \xC3\xA9"));
  EXPECT_FALSE(is_nfc_quick("e\xCC\x81"));
  EXPECT_TRUE(is_nfc_quick("Ещё й, カタカナ, 한국어, 😀👍🏽"));  // precomposed: no full NFC needed
  EXPECT_FALSE(is_nfc_quick("\xE1\x84\x80\xE1\x85\xA1"));         // jamo ᄀ ᅡ compose
  EXPECT_FALSE(is_nfc_quick("\xEA\xB0\x80\xE1\x86\xA8"));         // 가 + ᆨ -> 각
  EXPECT_FALSE(is_nfc_quick("\xE3\x81\x8B\xE3\x82\x99"));         // か + U+3099 -> が
  EXPECT_FALSE(is_nfc_quick("\xE2\x84\xAB"));                        // U+212B is a singleton
  EXPECT_FALSE(is_nfc_quick("\xE0\xB3\x86\xE0\xB3\x82"));         // Kannada U+0CC6 + U+0CC2 compose
}

// The fast path never says "already NFC" of text that NFC changes: every code point up to U+2FFFF,
// alone and after starters that begin compositions (Latin, Hangul L and LV, kana, Kannada, Sinhala),
// checked against libutf8proc's full NFC.
TEST(NfcTest, QuickCheckAgreesWithFullNfcOnEveryCodePoint) {
  const char32_t bases[] = {0, U'A', U'e', 0x1100, 0xAC00, 0x304B, 0x0CC6, 0x0DD9, 0x0B47, 0x1025};
  int quick = 0;
  for (char32_t cp = 0x80; cp < 0x30000; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    for (char32_t base : bases) {
      std::string text;
      if (base != 0) utf8::append(text, base);
      utf8::append(text, cp);
      if (!is_nfc_quick(text)) continue;
      ++quick;
      ASSERT_EQ(to_nfc(text), text) << "U+" << std::hex << static_cast<uint32_t>(cp) << " after U+"
                                    << static_cast<uint32_t>(base);
    }
  }
  EXPECT_GT(quick, 100000);  // the fast path does cover most of Unicode
}

TEST(TokenizerFileTest, MalformedFilesGiveOneLineNamingTheProblem) {
  testing::ScratchDir dir("tokenizer_bad");
  fs::path json_path = dir.path() / "tokenizer.json";
  write_file(json_path, "{ not json");
  EXPECT_NE(error_of([&] { Tokenizer::load(dir.path()); }).find("tokenizer.json: not valid JSON"), std::string::npos);

  write_file(json_path, R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]},
                            "pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"}})");
  std::string message = error_of([&] { Tokenizer::load(dir.path()); });
  EXPECT_NE(message.find("model.merges[0] uses \"ab\", which is not in model.vocab"), std::string::npos) << message;

  write_file(json_path, R"({"model": {"type": "BPE", "vocab": {}, "merges": []}, "normalizer": {"type": "NFKD"},
                            "pre_tokenizer": {"type": "ByteLevel"}})");
  message = error_of([&] { Tokenizer::load(dir.path()); });
  EXPECT_NE(message.find("normalizer of type \"NFKD\" is not supported"), std::string::npos) << message;

  fs::remove(json_path);
  write_file(dir.path() / "qwen.tiktoken", "IQ== 0\nIg== x1\n");
  message = error_of([&] { Tokenizer::load(dir.path()); });
  EXPECT_NE(message.find("qwen.tiktoken:2: expected \"base64 rank\""), std::string::npos) << message;

  fs::remove(dir.path() / "qwen.tiktoken");
  message = error_of([&] { Tokenizer::load(dir.path()); });
  EXPECT_NE(message.find("no tokenizer.json, qwen.tiktoken or tokenizer.model"), std::string::npos) << message;
  EXPECT_NE(error_of([&] { Tokenizer::load(dir.path() / "missing"); }).find("does not exist"), std::string::npos);
}

TEST(TokenizerFileTest, IdsOutsideTheVocabularyAreRejected) {
  auto tokenizer = Tokenizer::load(fixture("tiny_bpe"));
  std::vector<int32_t> ids = {5, 512};
  EXPECT_NE(error_of([&] { tokenizer->decode(ids); }).find("token id 512 is not in the vocabulary"), std::string::npos);
  auto sp = Tokenizer::load(fixture("mistral_sp"));
  std::vector<int32_t> negative = {-1};
  EXPECT_THROW(sp->decode(negative), Error);
}

TEST(IncrementalDecoderTest, HoldsSplitCharactersUntilComplete) {
  // The trimmed Qwen2 file has no merges for these emoji bytes, so each becomes 3-4 byte tokens.
  auto tokenizer = Tokenizer::load(fixture("qwen2"));
  std::string text = "😀👍🏽 你好 🇨🇳!";
  std::vector<int32_t> ids = tokenizer->encode(text);
  ASSERT_GT(ids.size(), 8u);
  IncrementalDecoder stream(*tokenizer);
  std::string streamed;
  int empty_pushes = 0;
  for (int32_t id : ids) {
    std::string piece = stream.push(id);
    EXPECT_EQ(utf8::find_invalid(piece), std::string::npos);
    empty_pushes += piece.empty();
    streamed += piece;
  }
  EXPECT_GT(empty_pushes, 0);  // some tokens held back a partial character
  EXPECT_EQ(streamed + stream.finish(), text);
  // A stream cut inside a character flushes U+FFFD, as decode does.
  IncrementalDecoder cut(*tokenizer);
  std::string partial = cut.push(ids[0]);
  EXPECT_EQ(partial + cut.finish(), tokenizer->decode(std::span(ids).first(1)));
}

// Generous bounds: a quadratic merge loop or regex would take minutes on these inputs.
void expect_linear_time(const Tokenizer& tokenizer, const std::string& text) {
  auto start = std::chrono::steady_clock::now();
  std::vector<int32_t> ids = tokenizer.encode(text, false);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_FALSE(ids.empty());
  std::string decoded = tokenizer.decode(ids);
  // tiny_bpe's ByteLevel(add_prefix_space=True) puts a space in front, as tokenizers does.
  EXPECT_TRUE(decoded == text || decoded == " " + text) << tokenizer.describe() << ": round trip differs";
  EXPECT_LT(seconds, 20.0) << tokenizer.describe() << " on " << text.size() << " bytes";
}

TEST(TokenizerLinearTimeTest, LongRunsOfOneCharacter) {
  std::vector<std::unique_ptr<Tokenizer>> tokenizers;
  tokenizers.push_back(Tokenizer::load(fixture("tiny_bpe")));
  tokenizers.push_back(Tokenizer::load(fixture("llama3")));
  fs::path qwen_v1 = testing::shared_dir() / "tokenizers" / "qwen-v1";
  if (fs::exists(qwen_v1 / "qwen.tiktoken")) {
    tokenizers.push_back(Tokenizer::load(qwen_v1));
  } else {
    std::cout << "[ NOTE ] qwen.tiktoken absent under " << qwen_v1 << ": checking the fixtures only\n";
  }
  for (const auto& tokenizer : tokenizers) {
    expect_linear_time(*tokenizer, std::string(1 << 20, 'a'));
    expect_linear_time(*tokenizer, std::string(100'000, ' '));
    expect_linear_time(*tokenizer, std::string(100'000, ' ') + "x");
    expect_linear_time(*tokenizer, std::string(1 << 20, '!'));
  }
}

std::vector<std::pair<std::string, int32_t>> segments(const AddedTokens& added, std::string_view text) {
  std::vector<TextSegment> out;
  added.split(text, out);
  std::vector<std::pair<std::string, int32_t>> pairs;
  for (const TextSegment& segment : out) pairs.emplace_back(std::string(segment.text), segment.added_id);
  return pairs;
}

TEST(AddedTokensTest, TheLongestMatchWinsWhateverTheOrderAdded) {
  AddedTokens added;
  added.add({"<a", 1});
  added.add({"<ab>", 2});
  added.add({"<ab", 3});
  using Segments = std::vector<std::pair<std::string, int32_t>>;
  EXPECT_EQ(segments(added, "<ab>c<abd<a"), (Segments{{"<ab>", 2}, {"c", -1}, {"<ab", 3}, {"d", -1}, {"<a", 1}}));
  // A later listing of the same text replaces the token (tokenizers' AddedVocabulary does too).
  added.add({"<ab", 7});
  EXPECT_EQ(segments(added, "x<ab"), (Segments{{"x", -1}, {"<ab", 7}}));
}

TEST(AddedTokensTest, ManyTokensWithOneFirstByteLoadAndMatchInLinearTime) {
  // Loading used to sort the first byte's tokens on every add (n log n per token: 69 s here), and
  // matching compared every token with the same first byte at every position (1e11 compares for
  // the text below). Generous bounds: each is well under a second now.
  constexpr int32_t kCount = 100'000;
  auto start = std::chrono::steady_clock::now();
  AddedTokens added;
  for (int32_t id = 0; id < kCount; ++id) added.add({"<t" + std::to_string(id) + ">", id});
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 10.0) << "adding";
  using Segments = std::vector<std::pair<std::string, int32_t>>;
  EXPECT_EQ(segments(added, "<t99999><t5>!<t1"), (Segments{{"<t99999>", 99999}, {"<t5>", 5}, {"!<t1", -1}}));
  const std::string angles(1 << 20, '<');
  start = std::chrono::steady_clock::now();
  EXPECT_EQ(segments(added, angles), (Segments{{angles, -1}}));
  seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 10.0) << "matching";
}

}  // namespace
}  // namespace tpserve::runtime
