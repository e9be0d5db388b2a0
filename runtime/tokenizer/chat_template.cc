#include "runtime/tokenizer/chat_template.h"

#include "common/error.h"
#include "runtime/tokenizer/chat_template_files.h"
#include "runtime/tokenizer/model_files.h"

namespace tpserve::runtime {
namespace {

// Qwen v1's make_context and Qwen2-Instruct's chat_template both default to this system prompt.
constexpr std::string_view kQwenDefaultSystem = "You are a helpful assistant.";

std::string_view trim(std::string_view text) {
  constexpr std::string_view kSpace = " \t\n\r\f\v";
  size_t begin = text.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return {};
  return text.substr(begin, text.find_last_not_of(kSpace) - begin + 1);
}

void check_role(const ChatMessage& message, std::initializer_list<std::string_view> allowed, ChatFormat format) {
  for (std::string_view role : allowed) {
    if (message.role == role) return;
  }
  raise(ErrorCode::kInvalidArgument, "chat message role \"{}\" is not one the {} template accepts", message.role,
        chat_format_name(format));
}

std::string chatml(const ChatTemplate& tmpl, std::span<const ChatMessage> messages, bool generation) {
  std::string out = tmpl.format == ChatFormat::kInternLM2 ? "<s>" : "";
  if (tmpl.default_system && (messages.empty() || messages[0].role != "system")) {
    out += "<|im_start|>system\n" + *tmpl.default_system + "<|im_end|>\n";
  }
  for (const ChatMessage& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  if (generation) out += "<|im_start|>assistant\n";
  return out;
}

std::string llama3(std::span<const ChatMessage> messages, bool generation) {
  std::string out = "<|begin_of_text|>";
  for (const ChatMessage& m : messages) {
    out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + std::string(trim(m.content)) + "<|eot_id|>";
  }
  if (generation) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// Llama-2-chat's template: the system prompt folds into the first user turn.
std::string llama2(std::span<const ChatMessage> messages) {
  std::string out, system;
  size_t first = 0;
  if (!messages.empty() && messages[0].role == "system") {
    system = messages[0].content;
    first = 1;
  }
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    check_role(m, {"user", "assistant"}, ChatFormat::kLlama2);
    std::string content = m.content;
    if (i == first && !system.empty()) content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content;
    if (m.role == "user") {
      out += "<s>[INST] " + std::string(trim(content)) + " [/INST]";
    } else {
      out += " " + std::string(trim(content)) + " </s>";
    }
  }
  return out;
}

std::string chatglm2(std::span<const ChatMessage> messages, bool generation) {
  std::string out = "[gMASK]sop";
  int round = 1;
  for (const ChatMessage& m : messages) {
    check_role(m, {"system", "user", "assistant"}, ChatFormat::kChatGLM2);
    if (m.role == "system") {
      out += m.content + "\n\n";
    } else if (m.role == "user") {
      out += "[Round " + std::to_string(round++) + "]\n\n问：" + m.content + "\n\n答：";
    } else {
      out += m.content + "\n\n";
    }
  }
  (void)generation;  // the prompt already ends in "答："
  return out;
}

std::string chatglm3(std::span<const ChatMessage> messages, bool generation) {
  std::string out = "[gMASK]sop";
  for (const ChatMessage& m : messages) {
    check_role(m, {"system", "user", "assistant", "observation"}, ChatFormat::kChatGLM3);
    out += "<|" + m.role + "|>\n " + m.content;
  }
  if (generation) out += "<|assistant|>";
  return out;
}

}  // namespace

std::optional<ChatFormat> parse_chat_format(std::string_view name) {
  for (ChatFormat format : {ChatFormat::kChatML, ChatFormat::kInternLM2, ChatFormat::kChatGLM2,
                            ChatFormat::kChatGLM3, ChatFormat::kLlama2, ChatFormat::kLlama3}) {
    if (chat_format_name(format) == name) return format;
  }
  return std::nullopt;
}

std::string_view chat_format_name(ChatFormat format) {
  switch (format) {
    case ChatFormat::kChatML: return "chatml";
    case ChatFormat::kInternLM2: return "internlm2";
    case ChatFormat::kChatGLM2: return "chatglm2";
    case ChatFormat::kChatGLM3: return "chatglm3";
    case ChatFormat::kLlama2: return "llama2";
    case ChatFormat::kLlama3: return "llama3";
  }
  return "unknown";
}

namespace {

// A built-in format, for checkpoints that ship no template.
ChatTemplate builtin(ChatFormat format, std::optional<std::string> default_system) {
  ChatTemplate tmpl;
  tmpl.format = format;
  tmpl.default_system = std::move(default_system);
  return tmpl;
}

}  // namespace

ChatTemplate chat_template_for_model(const std::filesystem::path& model_dir, const Tokenizer& tokenizer,
                                     const std::filesystem::path& template_file) {
  std::optional<ChatTemplateText> own =
      template_file.empty() ? find_chat_template(model_dir) : std::optional<ChatTemplateText>(read_chat_template_file(template_file));
  if (own) {
    ChatTemplate tmpl;
    tmpl.jinja = std::make_shared<const jinja::Template>(own->text, own->origin);
    tmpl.special_tokens = read_special_tokens(model_dir);
    return tmpl;
  }
  // A GGUF file carries its template (and its special tokens) in the tokenizer's metadata.
  if (const EmbeddedChatTemplate& embedded = tokenizer.embedded_chat_template(); !embedded.text.empty()) {
    ChatTemplate tmpl;
    tmpl.jinja = std::make_shared<const jinja::Template>(embedded.text, embedded.origin);
    for (const auto& [name, text] : embedded.special_tokens) tmpl.special_tokens[name] = text;
    return tmpl;
  }
  // No template shipped: the vocabulary says which family's format the model was trained on.
  TokenizerSettings settings = read_tokenizer_settings(model_dir);
  const std::string& type = settings.model_type;
  auto has = [&](const char* token) { return tokenizer.token_to_id(token).has_value(); };
  if (has("<|start_header_id|>")) return builtin(ChatFormat::kLlama3, std::nullopt);
  if (has("[gMASK]") || type == "chatglm") {
    bool v3 = has("<|user|>") || model_dir.filename().string().find("chatglm3") != std::string::npos;
    return builtin(v3 ? ChatFormat::kChatGLM3 : ChatFormat::kChatGLM2, std::nullopt);
  }
  if (has("<|im_start|>")) {
    if (type == "internlm2" || type == "internlm") return builtin(ChatFormat::kInternLM2, std::nullopt);
    // Qwen v1's make_context uses this system prompt when the conversation has none.
    bool qwen = type == "qwen" || type == "qwen2" || type == "qwen2_moe";
    return builtin(ChatFormat::kChatML, qwen ? std::optional<std::string>(std::string(kQwenDefaultSystem)) : std::nullopt);
  }
  if (has("<s>") && (type == "llama" || type == "mistral")) return builtin(ChatFormat::kLlama2, std::nullopt);
  raise(ErrorCode::kUnimplemented, "{}: the model ships no chat template and its vocabulary matches no built-in one "
        "(model_type \"{}\"); pass --chat-template FILE", model_dir.string(), type);
}

namespace {

nlohmann::ordered_json jinja_context(const ChatTemplate& tmpl, std::span<const ChatMessage> messages,
                                     bool add_generation_prompt) {
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const ChatMessage& m : messages) {
    list.push_back({{"role", m.role}, {"content", m.content_parts ? *m.content_parts : nlohmann::ordered_json(m.content)}});
  }
  nlohmann::ordered_json context = {{"messages", std::move(list)},
                                    {"tools", nullptr},
                                    {"documents", nullptr},
                                    {"add_generation_prompt", add_generation_prompt}};
  for (const auto& [key, value] : tmpl.special_tokens.items()) context[key] = value;
  return context;
}

// Built-in formats take text: the text parts of a content list, joined.
std::vector<ChatMessage> with_text_content(std::span<const ChatMessage> messages) {
  std::vector<ChatMessage> out(messages.begin(), messages.end());
  for (ChatMessage& m : out) {
    if (!m.content_parts || !m.content_parts->is_array()) continue;
    m.content.clear();
    for (const auto& part : *m.content_parts) {
      if (part.is_object() && part.value("type", "") == "text" && part.contains("text") && part["text"].is_string()) {
        m.content += part["text"].get<std::string>();
      }
    }
  }
  return out;
}

}  // namespace

std::string apply_chat_template(const ChatTemplate& chat_template, std::span<const ChatMessage> messages,
                                bool add_generation_prompt) {
  if (chat_template.jinja) return chat_template.jinja->render(jinja_context(chat_template, messages, add_generation_prompt));
  std::vector<ChatMessage> text_messages = with_text_content(messages);
  messages = text_messages;
  switch (chat_template.format) {
    case ChatFormat::kChatML:
    case ChatFormat::kInternLM2: return chatml(chat_template, messages, add_generation_prompt);
    case ChatFormat::kLlama3: return llama3(messages, add_generation_prompt);
    case ChatFormat::kLlama2: return llama2(messages);
    case ChatFormat::kChatGLM2: return chatglm2(messages, add_generation_prompt);
    case ChatFormat::kChatGLM3: return chatglm3(messages, add_generation_prompt);
  }
  return {};
}

}  // namespace tpserve::runtime
