// The tokenizer of a GGUF file's metadata against the tokenizer.json it was converted from (the
// fixture GGUF carries llama_gqa's tokenizer.json as tokenizer.ggml.*; tokenizer.json itself is
// checked against Hugging Face tokenizers in tokenizer_reference_test.cc), and its refusals.
#include "runtime/tokenizer/gguf_vocab.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "runtime/formats/gguf.h"
#include "runtime/tokenizer/chat_template.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kFile = testing::fixtures_dir() / "gguf" / "llama_gqa.gguf";

json fixture_metadata() { return GgufFile::open(kFile)->metadata(); }

TEST(GgufVocab, EncodesLikeTheTokenizerJsonItCameFrom) {
  const auto reference = Tokenizer::load(testing::fixtures_dir() / "llama_gqa");
  const auto tokenizer = load_gguf_tokenizer(fixture_metadata(), kFile);
  for (const char* text : {"Hello world", "  spaces\tand\nnewlines  ", "digits 12345 and 3.14",
                           "<|im_start|>user\nhi<|im_end|>", "caf\xc3\xa9 \xe2\x82\xac 100",
                           "it's we'll they're"}) {
    EXPECT_EQ(tokenizer->encode(text), reference->encode(text)) << text;
    const std::vector<int32_t> ids = reference->encode(text);
    EXPECT_EQ(tokenizer->decode(ids), reference->decode(ids)) << text;
  }
  EXPECT_EQ(tokenizer->token_to_id("<|im_end|>"), reference->token_to_id("<|im_end|>"));
  EXPECT_TRUE(tokenizer->is_special(*tokenizer->token_to_id("<|im_start|>")));
  // tokenizer.ggml.eos_token_id is <|im_end|>; <|endoftext|> ends a turn too.
  const std::vector<int32_t>& eos = tokenizer->eos_token_ids();
  EXPECT_NE(std::find(eos.begin(), eos.end(), *tokenizer->token_to_id("<|im_end|>")), eos.end());
}

TEST(GgufVocab, CarriesTheChatTemplate) {
  const auto tokenizer = load_gguf_tokenizer(fixture_metadata(), kFile);
  const ChatTemplate tmpl = chat_template_for_model(kFile, *tokenizer, {});
  ASSERT_NE(tmpl.jinja, nullptr);
  const std::vector<ChatMessage> messages = {{"user", "Hi"}};
  const std::string text = apply_chat_template(tmpl, messages, true);
  EXPECT_EQ(text, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(tmpl.special_tokens["eos_token"], "<|im_end|>");
}

std::string error_of(const json& metadata) {
  try {
    load_gguf_tokenizer(metadata, "m.gguf");
  } catch (const Error& error) {
    return error.what();
  }
  return "no error";
}

TEST(GgufVocab, RefusesMalformedMetadata) {
  json metadata = fixture_metadata();
  metadata["tokenizer.ggml.model"] = "bert";
  EXPECT_EQ(error_of(metadata), "m.gguf: metadata 'tokenizer.ggml.model': 'bert' is not supported (gpt2, llama are)");
  metadata = fixture_metadata();
  metadata.erase("tokenizer.ggml.model");
  EXPECT_NE(error_of(metadata).find("the file has no tokenizer"), std::string::npos);
  metadata = fixture_metadata();
  metadata["tokenizer.ggml.pre"] = "mystery";
  EXPECT_NE(error_of(metadata).find("'tokenizer.ggml.pre': 'mystery' is not supported"), std::string::npos);
  metadata = fixture_metadata();
  metadata["tokenizer.ggml.merges"].push_back("Ġ zzzz");
  EXPECT_NE(error_of(metadata).find("tokenizer.ggml.merges': entry 185 uses a token not in"), std::string::npos)
      << error_of(metadata);
  metadata = fixture_metadata();
  metadata["tokenizer.ggml.merges"][0] = "nospace";
  EXPECT_NE(error_of(metadata).find("entry 0 is not \"left right\""), std::string::npos);
  metadata = fixture_metadata();
  metadata["tokenizer.ggml.eos_token_id"] = 100000;
  EXPECT_NE(error_of(metadata).find("'tokenizer.ggml.eos_token_id': 100000 is not a token id"), std::string::npos);
  metadata = fixture_metadata();
  metadata["tokenizer.ggml.token_type"].erase(0);
  EXPECT_NE(error_of(metadata).find("511 entries for 512 tokens"), std::string::npos);
  metadata = fixture_metadata();
  metadata["tokenizer.ggml.add_bos_token"] = true;
  EXPECT_NE(error_of(metadata).find("bos_token_id is missing"), std::string::npos);
  metadata = fixture_metadata();
  // A control token ending in a lone UTF-8 lead byte: matched inside "... caf\x65\xCC\x81" it
  // left "\x81" for the pre-tokenizer, which never advanced on it (a hang; gguf fuzz target).
  metadata["tokenizer.ggml.tokens"][0] = "\xF0\x9F\x98\x80 cafe\xCC";
  metadata["tokenizer.ggml.token_type"][0] = 3;
  EXPECT_NE(error_of(metadata).find("'tokenizer.ggml.tokens': entry 0 (a control or user-defined token) "
                                    "is not valid UTF-8"),
            std::string::npos)
      << error_of(metadata);
  metadata = fixture_metadata();
  metadata["tokenizer.chat_template"] = 5;
  EXPECT_NE(error_of(metadata).find("'tokenizer.chat_template': expected a STRING"), std::string::npos);
}

}  // namespace
}  // namespace tpserve::runtime
