// Untrusted tokenizer files (issue 12): ids outside what the file can hold, repeated ids and ranks,
// each refused with one tpserve::Error naming the file and the field. On the code before these
// checks, the same files crashed (SIGSEGV, heap corruption), threw std::length_error or allocated
// tens of GiB.
#include <gtest/gtest.h>

#include <fstream>

#include "common/error.h"
#include "runtime/tokenizer/model_files.h"
#include "runtime/tokenizer/tokenizer.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

namespace fs = std::filesystem;

void write_file(const fs::path& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// The message of the tpserve::Error that loading `dir` throws; any other outcome fails the test.
std::string load_error(const fs::path& dir) {
  try {
    Tokenizer::load(dir);
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("(not a tpserve::Error: ") + e.what() + ")";
  }
  return "(no error)";
}

// A byte-level BPE tokenizer.json with this vocab, added_tokens and post_processor.
std::string tokenizer_json(const std::string& vocab, const std::string& added = "[]",
                           const std::string& post_processor = "null") {
  return R"({"model": {"type": "BPE", "vocab": )" + vocab + R"(, "merges": ["a b"]},
             "added_tokens": )" + added + R"(, "post_processor": )" + post_processor + R"(,
             "pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"}})";
}

// A model directory holding one tokenizer file; error_for writes it and loads the directory.
class TokenizerFileLimitsTest : public ::testing::Test {
 protected:
  explicit TokenizerFileLimitsTest(std::string file_name = "tokenizer.json") : file_name_(std::move(file_name)) {}
  std::string error_for(const std::string& text) {
    write_file(dir_.path() / file_name_, text);
    return load_error(dir_.path());
  }
  std::string file_name_;
  testing::ScratchDir dir_{"tokenizer_limits"};
};

using TokenizerJsonLimitsTest = TokenizerFileLimitsTest;

void expect_names(const std::string& message, const std::string& field) {
  EXPECT_NE(message.find("tokenizer.json: "), std::string::npos) << message;
  EXPECT_NE(message.find(field), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

TEST_F(TokenizerJsonLimitsTest, VocabIdsOutsideTheTokenIdRangeAreRefused) {
  // -5 was a SIGSEGV, 2^31-1 a std::length_error, 4e11 a 17 GiB allocation (issue 12).
  for (const std::string id : {"-5", "-1000", "2147483647", "400000000000", "1.5", "\"7\"", "99999999999999999999"}) {
    std::string message = error_for(tokenizer_json(R"({"a": 0, "b": 1, "ab": )" + id + "}"));
    expect_names(message, "model.vocab[\"ab\"]");
  }
}

TEST_F(TokenizerJsonLimitsTest, TwoVocabTokensSharingAnIdAreRefused) {
  expect_names(error_for(tokenizer_json(R"({"a": 0, "b": 1, "ab": 1})")), "model.vocab");
}

TEST_F(TokenizerJsonLimitsTest, AddedTokenIdsOutsideTheRangeAreRefused) {
  for (const std::string id : {"-1", "-7", "2147483647", "400000000000", "null"}) {
    std::string message =
        error_for(tokenizer_json(R"({"a": 0, "b": 1, "ab": 2})", R"([{"id": )" + id + R"(, "content": "<x>"}])"));
    expect_names(message, "added_tokens[0].id");
  }
}

TEST_F(TokenizerJsonLimitsTest, TwoAddedTokensSharingAnIdAreRefused) {
  std::string message = error_for(tokenizer_json(
      R"({"a": 0, "b": 1, "ab": 2})", R"([{"id": 3, "content": "<x>"}, {"id": 3, "content": "<y>"}])"));
  expect_names(message, "added_tokens[1].id");
  // The same token listed in both model.vocab and added_tokens (GPT-2's <|endoftext|>) stays fine.
  write_file(dir_.path() / "tokenizer.json",
             tokenizer_json(R"({"a": 0, "b": 1, "ab": 2})", R"([{"id": 2, "content": "ab"}])"));
  EXPECT_EQ(Tokenizer::load(dir_.path())->vocab_size(), 3);
}

TEST_F(TokenizerJsonLimitsTest, AnAddedTokenOverAnotherVocabTokenIsRefused) {
  std::string message =
      error_for(tokenizer_json(R"({"a": 0, "b": 1, "ab": 2})", R"([{"id": 1, "content": "<x>"}])"));
  expect_names(message, "added_tokens[0].id");
}

TEST_F(TokenizerJsonLimitsTest, TemplateIdsOutsideTheVocabularyAreRefused) {
  for (const std::string id : {"-1", "3", "2147483647"}) {
    std::string post = R"({"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}},
                          {"Sequence": {"id": "A"}}], "special_tokens": {"<s>": {"ids": [)" + id + "]}}}";
    expect_names(error_for(tokenizer_json(R"({"a": 0, "b": 1, "ab": 2})", "[]", post)),
                 "post_processor special_tokens[\"<s>\"].ids[0]");
  }
}

TEST_F(TokenizerJsonLimitsTest, SparseIdsOfTrimmedFilesStillLoad) {
  // The trimmed fixtures keep the real ids (Llama-3: 1,670 tokens up to id 128255).
  write_file(dir_.path() / "tokenizer.json",
             tokenizer_json(R"({"a": 0, "b": 1, "ab": 128000})", R"([{"id": 128255, "content": "<x>"}])"));
  auto tokenizer = Tokenizer::load(dir_.path());
  EXPECT_EQ(tokenizer->vocab_size(), 128256);
  EXPECT_EQ(tokenizer->encode("ab<x>", false), (std::vector<int32_t>{128000, 128255}));
  std::vector<int32_t> hole = {5000};
  EXPECT_THROW(tokenizer->decode(hole), Error);
}

class TiktokenLimitsTest : public TokenizerFileLimitsTest {
 protected:
  TiktokenLimitsTest() : TokenizerFileLimitsTest("qwen.tiktoken") {}
};

TEST_F(TiktokenLimitsTest, RanksMustNumberTheLinesWithoutGapsOrRepeats) {
  // "IQ==" "Ig==" "Iw==" are "!" "\"" "#".
  std::string message = error_for("IQ== 0\nIg== 0\n");
  EXPECT_NE(message.find("qwen.tiktoken:2: rank 0 is already used by line 1"), std::string::npos) << message;
  // A single rank of 9,999,999 made a 10-million-entry table (and Qwen's specials would follow it).
  message = error_for("IQ== 0\nIg== 9999999\n");
  EXPECT_NE(message.find("qwen.tiktoken: ranks are not 0..1"), std::string::npos) << message;
  message = error_for("IQ== 0\nIg== 1\nIw== 3\n");
  EXPECT_NE(message.find("rank 2 is missing"), std::string::npos) << message;
}

TEST_F(TiktokenLimitsTest, CrlfLinesAsShippedStillLoad) {
  // The real qwen.tiktoken ends its lines with "\r\n"; Qwen's specials follow the 3 ranks.
  write_file(dir_.path() / "qwen.tiktoken", "IQ== 0\r\nIg== 1\r\nIyQ= 2\r\n");
  auto tokenizer = Tokenizer::load(dir_.path());
  EXPECT_EQ(tokenizer->token_to_id("<|endoftext|>"), 3);
  std::vector<int32_t> ids = {0, 2};
  EXPECT_EQ(tokenizer->decode(ids), "!#$");
}

TEST_F(TiktokenLimitsTest, OverlongTokensAreRefused) {
  // 600 bytes of "aaa" ("YWFh" in base64): registering its merges tried every cut, quadratically.
  std::string line = "IQ== 0\n";
  for (int i = 0; i < 200; ++i) line += "YWFh";
  std::string message = error_for(line + " 1\n");
  EXPECT_NE(message.find("qwen.tiktoken:2: token of rank 1 is 600 bytes"), std::string::npos) << message;
}

TEST(SentencePieceLimitsTest, AddedTokenIdsFromTokenizerConfigAreChecked) {
  testing::ScratchDir dir("sentencepiece_limits");
  fs::copy_file(testing::fixtures_dir() / "tokenizers" / "mistral_sp" / "tokenizer.model",
                dir.path() / "tokenizer.model");
  for (const std::string id : {"-4", "2147483647"}) {
    write_file(dir.path() / "tokenizer_config.json",
               R"({"added_tokens_decoder": {")" + id + R"(": {"content": "<x>", "special": true}}})");
    std::string message = load_error(dir.path());
    EXPECT_NE(message.find("tokenizer_config.json: added_tokens_decoder[\"" + id + "\"]"), std::string::npos)
        << message;
  }
}

// added_tokens_decoder's keys are ids: a key that is not wholly a non-negative int32 ("12abc" used to
// be read as 12 by std::stoi, "-5" as -5) is refused naming the file and the key.
TEST(TokenizerConfigLimitsTest, AddedTokenKeysMustBeWholeIds) {
  testing::ScratchDir dir("tokenizer_config_ids");
  for (const std::string id : {"12abc", "-5", "99999999999", " 7", "", "0x10"}) {
    write_file(dir.path() / "tokenizer_config.json",
               R"({"added_tokens_decoder": {")" + id + R"(": {"content": "<x>"}}})");
    try {
      (void)read_tokenizer_settings(dir.path());
      ADD_FAILURE() << "accepted key '" << id << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kDataLoss);
      EXPECT_NE(std::string(e.what()).find("tokenizer_config.json: added_tokens_decoder[\"" + id +
                                           "\"]: the key is not a token id"),
                std::string::npos) << e.what();
    }
  }
  write_file(dir.path() / "tokenizer_config.json",
             R"({"added_tokens_decoder": {"7": {"content": "<x>"}}})");
  const TokenizerSettings settings = read_tokenizer_settings(dir.path());
  ASSERT_EQ(settings.added_tokens.size(), 1u);
  EXPECT_EQ(settings.added_tokens[0].id, 7);
}

}  // namespace
}  // namespace tpserve::runtime
