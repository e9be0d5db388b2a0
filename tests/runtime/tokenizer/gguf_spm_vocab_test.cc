// A GGUF file's SentencePiece-style vocabulary (tokenizer.ggml.model "llama") against llama.cpp's
// own tokenization of the same file (tests/fixtures/gguf/make_spm_gguf.py: Mistral's real
// tokenizer.model written as convert_hf_to_gguf.py writes it, ids from llama-cpp-python, decodes
// from SentencePiece; a tiny vocabulary with user-defined, unused and control tokens and no space
// prefix, decodes from llama.cpp), and every refusal.
#include "runtime/tokenizer/gguf_spm_vocab.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>

#include "common/error.h"
#include "runtime/formats/gguf.h"
#include "runtime/tokenizer/gguf_vocab.h"
#include "runtime/tokenizer/sentencepiece_proto.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kFile = testing::fixtures_dir() / "gguf" / "mistral_spm_vocab.gguf";
const fs::path kTinyFile = testing::fixtures_dir() / "gguf" / "tiny_spm.gguf";

json metadata_of(const fs::path& file) { return GgufFile::open(file)->metadata(); }

const json& mistral_metadata() {
  static const json metadata = metadata_of(kFile);
  return metadata;
}

const json& expected() {
  static const json value = [] {
    std::ifstream in(testing::fixtures_dir() / "gguf" / "mistral_spm_expected.json");
    return json::parse(in);
  }();
  return value;
}

std::vector<int32_t> ids_of(const json& array) { return array.get<std::vector<int32_t>>(); }

bool has_special_literal(const std::string& text) {
  return text.find("<s>") != std::string::npos || text.find("</s>") != std::string::npos ||
         text.find("<unk>") != std::string::npos;
}

TEST(GgufSpmVocab, EncodesLikeLlamaCpp) {
  const auto tokenizer = load_gguf_tokenizer(mistral_metadata(), kFile);
  ASSERT_GE(expected()["cases"].size(), 30u);
  for (const json& item : expected()["cases"]) {
    const std::string text = item["text"].get<std::string>();
    EXPECT_EQ(tokenizer->encode(text, true), ids_of(item["ids"])) << text;
    EXPECT_EQ(tokenizer->encode(text, false), ids_of(item["ids_no_bos"])) << text;
  }
}

TEST(GgufSpmVocab, DecodesLikeSentencePieceAndRoundTrips) {
  const auto tokenizer = load_gguf_tokenizer(mistral_metadata(), kFile);
  for (const json& item : expected()["cases"]) {
    const std::string text = item["text"].get<std::string>();
    const std::vector<int32_t> ids = ids_of(item["ids_no_bos"]);
    EXPECT_EQ(tokenizer->decode(ids), item["decoded"].get<std::string>()) << text;
    EXPECT_EQ(tokenizer->decode(ids_of(item["ids"])), item["decoded_with_bos"].get<std::string>()) << text;
    // Round trip, except where the text has special tokens (decoded as nothing) or U+2581 itself
    // (SentencePiece's space, decoded as " ").
    if (!has_special_literal(text) && text.find("\xE2\x96\x81") == std::string::npos) {
      EXPECT_EQ(tokenizer->decode(tokenizer->encode(text, true)), text);
    }
    IncrementalDecoder stream(*tokenizer);
    std::string streamed;
    for (int32_t id : ids) streamed += stream.push(id);
    streamed += stream.finish();
    EXPECT_EQ(streamed, item["decoded"].get<std::string>()) << text;
  }
}

// The same vocabulary as a tokenizer.model (the SentencePiece path tpserve already had) gives the
// same ids for text with no special tokens written in it.
TEST(GgufSpmVocab, AgreesWithTheTokenizerModelItCameFrom) {
  const auto tokenizer = load_gguf_tokenizer(mistral_metadata(), kFile);
  const auto reference = Tokenizer::load(testing::fixtures_dir() / "tokenizers" / "mistral_sp");
  for (const json& item : expected()["cases"]) {
    const std::string text = item["text"].get<std::string>();
    if (has_special_literal(text)) continue;
    EXPECT_EQ(tokenizer->encode(text, true), reference->encode(text, true)) << text;
  }
}

TEST(GgufSpmVocab, SpecialTokens) {
  const auto tokenizer = load_gguf_tokenizer(mistral_metadata(), kFile);
  EXPECT_EQ(tokenizer->vocab_size(), 32000);
  EXPECT_EQ(tokenizer->bos_token_id(), 1);
  EXPECT_EQ(tokenizer->eos_token_ids(), std::vector<int32_t>{2});
  EXPECT_EQ(tokenizer->token_to_id("<s>"), 1);
  EXPECT_EQ(tokenizer->token_to_id("</s>"), 2);
  EXPECT_EQ(tokenizer->token_to_id("<unk>"), 0);
  EXPECT_EQ(tokenizer->token_to_id("\xE2\x96\x81Hello"), 22557);
  EXPECT_EQ(tokenizer->token_to_id("no such piece"), std::nullopt);
  EXPECT_TRUE(tokenizer->is_special(1));
  EXPECT_TRUE(tokenizer->is_special(0));
  EXPECT_FALSE(tokenizer->is_special(22557));
  EXPECT_EQ(tokenizer->decode(std::vector<int32_t>{1, 22557, 2}, true), "Hello");
  EXPECT_NE(tokenizer->describe().find("mistral_spm_vocab.gguf"), std::string::npos);
  EXPECT_THROW(tokenizer->decode(std::vector<int32_t>{32000}), Error);
}

TEST(GgufSpmVocab, BosAndEosFollowTheKeys) {
  json metadata = mistral_metadata();
  const std::vector<int32_t> hello = {22557, 1526};
  const std::string text = "Hello world";
  metadata["tokenizer.ggml.add_bos_token"] = false;
  EXPECT_EQ(load_gguf_tokenizer(metadata, kFile)->encode(text), hello);
  metadata["tokenizer.ggml.add_eos_token"] = true;
  EXPECT_EQ(load_gguf_tokenizer(metadata, kFile)->encode(text), (std::vector<int32_t>{22557, 1526, 2}));
  EXPECT_EQ(load_gguf_tokenizer(metadata, kFile)->encode(text, false), hello);
  metadata["tokenizer.ggml.eos_token_id"] = 5;
  metadata["tokenizer.ggml.add_bos_token"] = true;
  metadata["tokenizer.ggml.bos_token_id"] = 7;
  EXPECT_EQ(load_gguf_tokenizer(metadata, kFile)->encode(text), (std::vector<int32_t>{7, 22557, 1526, 5}));
  // Absent keys: llama.cpp's defaults for this vocabulary type (add BOS <s> = 1, no EOS, </s> = 2).
  for (const char* key : {"tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
                          "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"}) {
    metadata.erase(key);
  }
  const auto tokenizer = load_gguf_tokenizer(metadata, kFile);
  EXPECT_EQ(tokenizer->encode(text), (std::vector<int32_t>{1, 22557, 1526}));
  EXPECT_EQ(tokenizer->bos_token_id(), 1);
  EXPECT_EQ(tokenizer->eos_token_ids(), std::vector<int32_t>{2});
}

TEST(GgufSpmVocab, AddSpacePrefixFalse) {
  json metadata = mistral_metadata();
  metadata["tokenizer.ggml.add_space_prefix"] = false;
  // "Hello" without the space SentencePiece and llama.cpp put before the text: 16230 "Hello", not
  // 22557 "▁Hello" (both pieces of this vocabulary).
  const auto tokenizer = load_gguf_tokenizer(metadata, kFile);
  EXPECT_EQ(tokenizer->token_to_id("Hello"), 16230);
  EXPECT_EQ(tokenizer->encode("Hello world", false), (std::vector<int32_t>{16230, 1526}));
  EXPECT_EQ(tokenizer->decode(std::vector<int32_t>{16230, 1526}), "Hello world");
}

// User-defined, unused and control tokens, byte fallback and no space prefix, against llama.cpp.
TEST(GgufSpmVocab, TinyVocabularyLikeLlamaCpp) {
  const auto tokenizer = load_gguf_tokenizer(metadata_of(kTinyFile), kTinyFile);
  ASSERT_FALSE(expected()["tiny_cases"].empty());
  for (const json& item : expected()["tiny_cases"]) {
    if (item.contains("decode_only")) {
      EXPECT_EQ(tokenizer->decode(ids_of(item["decode_only"])), item["decoded"].get<std::string>())
          << item["decode_only"].dump();
      continue;
    }
    const std::string text = item["text"].get<std::string>();
    EXPECT_EQ(tokenizer->encode(text, true), ids_of(item["ids"])) << text;
    EXPECT_EQ(tokenizer->encode(text, false), ids_of(item["ids_no_bos"])) << text;
    EXPECT_EQ(tokenizer->decode(ids_of(item["ids_no_bos"])), item["decoded"].get<std::string>()) << text;
  }
  EXPECT_FALSE(tokenizer->is_special(*tokenizer->token_to_id("<tool>")));
  EXPECT_TRUE(tokenizer->is_special(*tokenizer->token_to_id("[INST]")));
}

TEST(GgufSpmVocab, EmptyTokenIsRenamedAsLlamaCppDoes) {
  json metadata = mistral_metadata();
  metadata["tokenizer.ggml.tokens"][1000] = "";
  const auto tokenizer = load_gguf_tokenizer(metadata, kFile);
  EXPECT_EQ(tokenizer->token_to_id("[EMPTY_1000]"), 1000);
}

std::string error_of(const json& metadata) {
  try {
    load_gguf_tokenizer(metadata, "m.gguf");
  } catch (const Error& error) {
    return error.what();
  }
  return "no error";
}

// Each edit of the Mistral metadata and the one line it is refused with.
struct Refusal {
  const char* what;
  void (*edit)(json&);
  const char* message;
};

TEST(GgufSpmVocab, RefusesWhatItDoesNotSupport) {
  const Refusal refusals[] = {
      {"charsmap", [](json& m) { m["tokenizer.ggml.precompiled_charsmap"] = json::array({1, 2, 3}); },
       "m.gguf: metadata 'tokenizer.ggml.precompiled_charsmap': a normalization map is not supported for a "
       "llama (SentencePiece) vocabulary"},
      {"remove_extra_whitespaces", [](json& m) { m["tokenizer.ggml.remove_extra_whitespaces"] = true; },
       "m.gguf: metadata 'tokenizer.ggml.remove_extra_whitespaces': true is not supported for a llama "
       "(SentencePiece) vocabulary"},
      {"phi-3", [](json& m) { m["general.name"] = "Phi-3-mini-4k-instruct"; },
       "m.gguf: metadata 'general.name': 'Phi-3-mini-4k-instruct': llama.cpp strips the whitespace after this "
       "model's special tokens (its Phi-3 rule); not supported"},
      {"t5", [](json& m) { m["tokenizer.ggml.model"] = "t5"; },
       "m.gguf: metadata 'tokenizer.ggml.model': 't5' is not supported (gpt2, llama are)"},
  };
  for (const Refusal& refusal : refusals) {
    json metadata = mistral_metadata();
    refusal.edit(metadata);
    EXPECT_EQ(error_of(metadata), refusal.message) << refusal.what;
  }
  json metadata = mistral_metadata();
  metadata["tokenizer.ggml.remove_extra_whitespaces"] = false;  // what llama.cpp does anyway
  EXPECT_EQ(error_of(metadata), "no error");
}

TEST(GgufSpmVocab, RefusesMalformedMetadata) {
  const Refusal refusals[] = {
      {"no scores", [](json& m) { m.erase("tokenizer.ggml.scores"); },
       "m.gguf: metadata 'tokenizer.ggml.scores': missing or not an array"},
      {"short scores", [](json& m) { m["tokenizer.ggml.scores"].erase(5); },
       "m.gguf: metadata 'tokenizer.ggml.scores': 31999 entries for 32000 tokens"},
      {"score text", [](json& m) { m["tokenizer.ggml.scores"][7] = "high"; },
       "m.gguf: metadata 'tokenizer.ggml.scores': entry 7 is not a finite number"},
      {"score overflow", [](json& m) { m["tokenizer.ggml.scores"][8] = 1e300; },
       "m.gguf: metadata 'tokenizer.ggml.scores': entry 8 is not a finite number"},
      {"score nan", [](json& m) { m["tokenizer.ggml.scores"][9] = std::nan(""); },
       "m.gguf: metadata 'tokenizer.ggml.scores': entry 9 is not a finite number"},
      {"no types", [](json& m) { m.erase("tokenizer.ggml.token_type"); },
       "m.gguf: metadata 'tokenizer.ggml.token_type': missing or not an array"},
      {"long types", [](json& m) { m["tokenizer.ggml.token_type"].push_back(1); },
       "m.gguf: metadata 'tokenizer.ggml.token_type': 32001 entries for 32000 tokens"},
      {"type 7", [](json& m) { m["tokenizer.ggml.token_type"][300] = 7; },
       "m.gguf: metadata 'tokenizer.ggml.token_type': entry 300 is 7 (1 to 6 expected: llama.cpp's token types)"},
      {"type 0", [](json& m) { m["tokenizer.ggml.token_type"][301] = 0; },
       "m.gguf: metadata 'tokenizer.ggml.token_type': entry 301 is 0 (1 to 6 expected: llama.cpp's token types)"},
      {"type text", [](json& m) { m["tokenizer.ggml.token_type"][302] = "normal"; },
       "m.gguf: metadata 'tokenizer.ggml.token_type': entry 302 is \"normal\" (1 to 6 expected: llama.cpp's "
       "token types)"},
      {"no tokens", [](json& m) { m["tokenizer.ggml.tokens"] = json::array(); },
       "m.gguf: metadata 'tokenizer.ggml.tokens': 0 tokens (1 to 16777216 expected)"},
      {"token number", [](json& m) { m["tokenizer.ggml.tokens"][400] = 5; },
       "m.gguf: metadata 'tokenizer.ggml.tokens': entry 400 is not a string"},
      {"token not utf-8", [](json& m) { m["tokenizer.ggml.tokens"][401] = "caf\xC3"; },
       "m.gguf: metadata 'tokenizer.ggml.tokens': entry 401 is not valid UTF-8"},
      {"repeat", [](json& m) { m["tokenizer.ggml.tokens"][402] = m["tokenizer.ggml.tokens"][22557]; },
       "m.gguf: metadata 'tokenizer.ggml.tokens': entry 22557 repeats entry 402"},
      {"bad byte piece", [](json& m) { m["tokenizer.ggml.tokens"][68] = "<0x4g>"; },
       "m.gguf: metadata 'tokenizer.ggml.tokens': entry 68 is a byte token (type 6) but not \"<0xNN>\""},
      {"lower-case byte piece", [](json& m) { m["tokenizer.ggml.tokens"][257] = "<0xfe>"; },
       "m.gguf: metadata 'tokenizer.ggml.tokens': entry 257 is a byte token (type 6) but not \"<0xNN>\""},
      {"missing byte", [](json& m) { m["tokenizer.ggml.token_type"][68] = 1; },
       "m.gguf: metadata 'tokenizer.ggml.tokens': no byte token <0x41> (type 6): llama.cpp falls back to the 256 "
       "byte tokens for characters outside the vocabulary"},
      {"two unknowns", [](json& m) { m["tokenizer.ggml.token_type"][1] = 2; },
       "m.gguf: metadata 'tokenizer.ggml.token_type': entries 0 and 1 are both the unknown token (2)"},
      {"no unknown", [](json& m) { m["tokenizer.ggml.token_type"][0] = 3; },
       "m.gguf: metadata 'tokenizer.ggml.token_type': no unknown token (type 2); SentencePiece needs one"},
      {"bos out of range", [](json& m) { m["tokenizer.ggml.bos_token_id"] = 32000; },
       "m.gguf: metadata 'tokenizer.ggml.bos_token_id': 32000 is not a token id below the vocabulary size 32000"},
      {"eos negative", [](json& m) { m["tokenizer.ggml.eos_token_id"] = -1; },
       "m.gguf: metadata 'tokenizer.ggml.eos_token_id': -1 is not a token id below the vocabulary size 32000"},
      {"add_bos text", [](json& m) { m["tokenizer.ggml.add_bos_token"] = "yes"; },
       "m.gguf: metadata 'tokenizer.ggml.add_bos_token': expected a BOOL"},
      {"add_space_prefix number", [](json& m) { m["tokenizer.ggml.add_space_prefix"] = 1; },
       "m.gguf: metadata 'tokenizer.ggml.add_space_prefix': expected a BOOL"},
      {"remove_extra_whitespaces text", [](json& m) { m["tokenizer.ggml.remove_extra_whitespaces"] = "no"; },
       "m.gguf: metadata 'tokenizer.ggml.remove_extra_whitespaces': expected a BOOL"},
  };
  for (const Refusal& refusal : refusals) {
    json metadata = mistral_metadata();
    refusal.edit(metadata);
    EXPECT_EQ(error_of(metadata), refusal.message) << refusal.what;
  }
}

// sentencepiece_proto.cc against Python protobuf's serialization of the same ModelProto
// (sentencepiece_model_pb2, in make_spm_gguf.py's sentencepiece step).
TEST(SentencePieceProto, SerializesLikeProtobuf) {
  SentencePieceModelSpec spec;
  spec.pieces = {{"<unk>", 0, SentencePieceModelSpec::PieceType::kUnknown},
                 {"\xE2\x96\x81" "a", -1.5F, SentencePieceModelSpec::PieceType::kNormal},
                 {"<0x0A>", 0, SentencePieceModelSpec::PieceType::kByte}};
  spec.byte_fallback = true;
  spec.bos_id = -1;
  spec.add_dummy_prefix = false;
  const std::string bytes = serialize_model_proto(spec);
  std::string hex;
  for (unsigned char c : bytes) hex += fmt::format("{:02x}", c);
  EXPECT_EQ(hex, expected()["model_proto_hex"].get<std::string>());
}

}  // namespace
}  // namespace tpserve::runtime
