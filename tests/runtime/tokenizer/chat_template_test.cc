// Chat templates against hand-written renders of each family's template (the Jinja of Qwen2,
// InternLM2, ChatGLM3, Llama-2 and Llama-3 chat models; ChatGLM2's build_prompt).
#include <gtest/gtest.h>

#include "runtime/tokenizer/chat_template.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

const std::vector<ChatMessage> kConversation = {
    {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "2+2?"}};

TEST(ChatTemplateTest, ChatMLWithDefaultSystem) {
  ChatTemplate tmpl{ChatFormat::kChatML, "You are a helpful assistant."};
  std::vector<ChatMessage> one = {{"user", "你好"}};
  EXPECT_EQ(apply_chat_template(tmpl, one),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(apply_chat_template(tmpl, kConversation, false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n");
}

TEST(ChatTemplateTest, EveryFamily) {
  EXPECT_EQ(apply_chat_template({ChatFormat::kInternLM2, std::nullopt}, std::vector<ChatMessage>{{"user", "Hi"}}),
            "<s><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(apply_chat_template({ChatFormat::kLlama3, std::nullopt}, kConversation),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
            "\n\nHello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(apply_chat_template({ChatFormat::kLlama2, std::nullopt}, kConversation),
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] 2+2? [/INST]");
  EXPECT_EQ(apply_chat_template({ChatFormat::kChatGLM3, std::nullopt}, kConversation),
            "[gMASK]sop<|system|>\n Be brief.<|user|>\n Hi<|assistant|>\n Hello!<|user|>\n 2+2?<|assistant|>");
  std::vector<ChatMessage> glm2 = {{"user", "你好"}, {"assistant", "你好！"}, {"user", "再见"}};
  EXPECT_EQ(apply_chat_template({ChatFormat::kChatGLM2, std::nullopt}, glm2),
            "[gMASK]sop[Round 1]\n\n问：你好\n\n答：你好！\n\n[Round 2]\n\n问：再见\n\n答：");
}

TEST(ChatTemplateTest, ChosenFromTheModelDirectory) {
  auto dir = [](const char* name) { return testing::fixtures_dir() / "tokenizers" / name; };
  auto qwen2 = Tokenizer::load(dir("qwen2"));
  ChatTemplate tmpl = chat_template_for_model(dir("qwen2"), *qwen2);
  EXPECT_EQ(tmpl.format, ChatFormat::kChatML);
  EXPECT_EQ(tmpl.default_system, "You are a helpful assistant.");
  EXPECT_EQ(chat_template_for_model(dir("llama3"), *Tokenizer::load(dir("llama3"))).format, ChatFormat::kLlama3);
  EXPECT_EQ(chat_template_for_model(dir("mistral_sp"), *Tokenizer::load(dir("mistral_sp"))).format,
            ChatFormat::kLlama2);
  auto tiny = Tokenizer::load(dir("tiny_bpe"));
  EXPECT_EQ(chat_template_for_model(dir("tiny_bpe"), *tiny).format, ChatFormat::kChatML);
  // The rendered prompt tokenizes with the specials as single ids.
  std::string prompt = apply_chat_template(tmpl, std::vector<ChatMessage>{{"user", "你好"}});
  std::vector<int32_t> ids = qwen2->encode(prompt, false);
  EXPECT_EQ(ids.front(), 151644);
  EXPECT_EQ(qwen2->decode(ids), prompt);
}

TEST(ChatTemplateTest, FormatNamesRoundTrip) {
  for (const char* name : {"chatml", "internlm2", "chatglm2", "chatglm3", "llama2", "llama3"}) {
    auto format = parse_chat_format(name);
    ASSERT_TRUE(format) << name;
    EXPECT_EQ(chat_format_name(*format), name);
  }
  EXPECT_FALSE(parse_chat_format("jinja"));
}

}  // namespace
}  // namespace tpserve::runtime
