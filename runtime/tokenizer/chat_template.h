// Chat templates of the seed families, written out in C++ (no Jinja at run time). Each format is the
// text the model's own template renders; encode the result with add_special_tokens = false, since
// the text already holds the BOS/prefix tokens.
//
//   ChatML     Qwen v1/1.5/2/2.5: <|im_start|>{role}\n{content}<|im_end|>\n ... <|im_start|>assistant\n
//              with the model's default system prompt when the conversation has none.
//   InternLM2  <s> + ChatML, no default system prompt (internlm2-chat's chat_template).
//   ChatGLM2   [gMASK]sop[Round 1]\n\n问：{q}\n\n答：{a}\n\n[Round 2]\n\n问：{q}\n\n答：
//              (tokenization_chatglm.py build_prompt; a system message goes first, then "\n\n").
//   ChatGLM3   [gMASK]sop<|{role}|>\n {content} ... <|assistant|>
//   Llama2     <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] ...
//   Llama3     <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|> ...
//              <|start_header_id|>assistant<|end_header_id|>\n\n
#pragma once

#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "runtime/tokenizer/tokenizer.h"

namespace tpserve::runtime {

enum class ChatFormat { kChatML, kInternLM2, kChatGLM2, kChatGLM3, kLlama2, kLlama3 };

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" (ChatGLM3 also "observation")
  std::string content;
};

struct ChatTemplate {
  ChatFormat format = ChatFormat::kChatML;
  std::optional<std::string> default_system;  // used when the first message is not a system one
};

// The template of a model directory: config.json model_type ("qwen", "qwen2", "internlm2",
// "chatglm", "llama", ...), refined by tokenizer_config.json's chat_template (ChatGLM3's role tokens,
// Qwen2.5's default system prompt) and the vocabulary (<|start_header_id|> means Llama-3).
// Throws tpserve::Error(kUnimplemented) when nothing identifies one.
ChatTemplate chat_template_for_model(const std::filesystem::path& model_dir, const Tokenizer& tokenizer);

// "chatml", "internlm2", "chatglm2", "chatglm3", "llama2", "llama3".
std::optional<ChatFormat> parse_chat_format(std::string_view name);
std::string_view chat_format_name(ChatFormat format);

// Renders the conversation; with add_generation_prompt the text ends where the assistant's reply
// starts. Throws tpserve::Error(kInvalidArgument) for a role the format has no place for.
std::string apply_chat_template(const ChatTemplate& chat_template, std::span<const ChatMessage> messages,
                                bool add_generation_prompt = true);

}  // namespace tpserve::runtime
