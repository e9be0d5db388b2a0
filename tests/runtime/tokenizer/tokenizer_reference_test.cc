// The C++ tokenizers against the Hugging Face reference: ids, decodes and streaming decodes recorded
// by tests/fixtures/tokenizers/make_tokenizer_fixtures.py (tokenizers / tiktoken / sentencepiece) on a
// multilingual corpus with special tokens.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>

#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/utf8.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json read_expected(const fs::path& dir) {
  std::ifstream in(dir / "expected.json");
  return json::parse(in);
}

std::string show(const std::string& text) { return text.size() > 60 ? text.substr(0, 60) + "..." : text; }

// Every case of expected.json: encode with and without special tokens, decode both ways, and the
// streaming decoder's pieces (each valid UTF-8) concatenating to the full decode.
void check_cases(const Tokenizer& tokenizer, const json& expected, bool check_skip_special = true) {
  ASSERT_FALSE(expected["cases"].empty());
  for (const json& c : expected["cases"]) {
    std::string text = c["text"];
    auto ids = c["ids"].get<std::vector<int32_t>>();
    SCOPED_TRACE("text: " + show(text));
    EXPECT_EQ(tokenizer.encode(text, true), ids);
    EXPECT_EQ(tokenizer.encode(text, false), c["ids_no_special"].get<std::vector<int32_t>>());
    std::string decoded = tokenizer.decode(ids);
    EXPECT_EQ(decoded, c["decoded"].get<std::string>());
    if (check_skip_special && c.contains("decoded_skip_special")) {
      EXPECT_EQ(tokenizer.decode(ids, true), c["decoded_skip_special"].get<std::string>());
    }
    IncrementalDecoder stream(tokenizer);
    std::string streamed;
    for (int32_t id : ids) {
      std::string piece = stream.push(id);
      EXPECT_EQ(utf8::find_invalid(piece), std::string::npos);
      streamed += piece;
    }
    streamed += stream.finish();
    EXPECT_EQ(streamed, decoded);
  }
}

class FixtureTokenizerTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FixtureTokenizerTest, MatchesHuggingFaceReference) {
  fs::path dir = testing::fixtures_dir() / "tokenizers" / GetParam();
  auto tokenizer = Tokenizer::load(dir);
  check_cases(*tokenizer, read_expected(dir));
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, FixtureTokenizerTest,
                         ::testing::Values("tiny_bpe", "qwen2", "llama3", "mistral_sp"));

fs::path qwen_v1_dir() { return testing::shared_dir() / "tokenizers" / "qwen-v1"; }

TEST(QwenV1TokenizerTest, MatchesTiktokenReference) {
  if (!fs::exists(qwen_v1_dir() / "qwen.tiktoken")) {
    GTEST_SKIP() << "qwen.tiktoken not found under " << qwen_v1_dir() << " (shared/ absent)";
  }
  auto tokenizer = Tokenizer::load(qwen_v1_dir());
  json expected = read_expected(testing::fixtures_dir() / "tokenizers" / "qwen_v1");
  check_cases(*tokenizer, expected, false);
  EXPECT_EQ(tokenizer->vocab_size(), 151643 + 208);
  EXPECT_EQ(tokenizer->token_to_id("<|im_end|>"), 151645);
  EXPECT_EQ(tokenizer->eos_token_ids(), (std::vector<int32_t>{151645, 151643}));
}

TEST(TokenizerSpecialsTest, EosAndBosFromModelFiles) {
  auto qwen2 = Tokenizer::load(testing::fixtures_dir() / "tokenizers" / "qwen2");
  EXPECT_EQ(qwen2->eos_token_ids(), (std::vector<int32_t>{151645, 151643}));
  EXPECT_EQ(qwen2->token_to_id("Ġthe"), 279);
  auto llama3 = Tokenizer::load(testing::fixtures_dir() / "tokenizers" / "llama3");
  EXPECT_EQ(llama3->bos_token_id(), 128000);
  EXPECT_EQ(llama3->eos_token_ids(), (std::vector<int32_t>{128009, 128001, 128008}));
  auto tiny = Tokenizer::load(testing::fixtures_dir() / "tokenizers" / "tiny_bpe");
  EXPECT_EQ(tiny->vocab_size(), 512);
  EXPECT_EQ(tiny->token_to_id("<|endoftext|>"), 0);
  EXPECT_EQ(tiny->eos_token_ids(), (std::vector<int32_t>{0, 2}));
  auto sp = Tokenizer::load(testing::fixtures_dir() / "tokenizers" / "mistral_sp");
  EXPECT_EQ(sp->bos_token_id(), 1);
  EXPECT_EQ(sp->eos_token_ids(), (std::vector<int32_t>{2}));
}

}  // namespace
}  // namespace tpserve::runtime
