// Chat templates. A checkpoint that ships its own Jinja chat template (chat_template.jinja,
// chat_template.json or tokenizer_config.json's chat_template; or --chat-template FILE) is rendered
// with it, by runtime/tokenizer/jinja, exactly as transformers' apply_chat_template renders it.
// The formats below, written out in C++, remain only for checkpoints that ship none (Qwen v1's
// tiktoken checkpoints, ChatGLM2), chosen by the special tokens the vocabulary has. Encode the
// result with add_special_tokens = false, since the text already holds the BOS/prefix tokens.
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

#include <nlohmann/json.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "runtime/tokenizer/jinja/template.h"
#include "runtime/tokenizer/tokenizer.h"

namespace tpserve::runtime {

enum class ChatFormat { kChatML, kInternLM2, kChatGLM2, kChatGLM3, kLlama2, kLlama3 };

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" (ChatGLM3 also "observation")
  std::string content;
  // Newer templates also accept content as a list of parts ([{"type": "text", "text": ...}]); when
  // set, a Jinja template sees this list as the message's content (built-in formats join the text).
  std::optional<nlohmann::ordered_json> content_parts = std::nullopt;
};

struct ChatTemplate {
  ChatFormat format = ChatFormat::kChatML;
  std::optional<std::string> default_system;  // used when the first message is not a system one
  // The checkpoint's own template; when set it is rendered instead of `format`.
  std::shared_ptr<const jinja::Template> jinja;
  nlohmann::ordered_json special_tokens = nlohmann::ordered_json::object();  // bos_token, eos_token, ...
};

// The template of a model directory: its own Jinja template when it ships one (or the file given,
// which wins; empty means none), else a built-in format chosen by the vocabulary's special tokens (<|im_start|>:
// ChatML, <|start_header_id|>: Llama-3, [gMASK] / <|user|>: ChatGLM2 / 3, <s> with a llama or
// mistral model_type: Llama-2). Throws tpserve::Error(kInvalidArgument) "<file>, line N: ..." for a
// template with a syntax error, kNotFound for an unreadable template file, and kUnimplemented when
// nothing identifies a template.
ChatTemplate chat_template_for_model(const std::filesystem::path& model_dir, const Tokenizer& tokenizer,
                                     const std::filesystem::path& template_file = {});

// "chatml", "internlm2", "chatglm2", "chatglm3", "llama2", "llama3".
std::optional<ChatFormat> parse_chat_format(std::string_view name);
std::string_view chat_format_name(ChatFormat format);

// Renders the conversation; with add_generation_prompt the text ends where the assistant's reply
// starts. A Jinja template gets what transformers passes: messages, tools=None, documents=None,
// add_generation_prompt and the special tokens. Throws tpserve::Error(kInvalidArgument) for a role
// the format has no place for, or with the template's own message when it calls raise_exception.
std::string apply_chat_template(const ChatTemplate& chat_template, std::span<const ChatMessage> messages,
                                bool add_generation_prompt = true);

}  // namespace tpserve::runtime
