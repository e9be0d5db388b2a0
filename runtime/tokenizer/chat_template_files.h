// Where a checkpoint keeps its own chat template, and the special tokens the template is rendered
// with. transformers looks, in this order, at chat_template.jinja (what transformers 5 writes),
// chat_template.json ({"chat_template": "..."}, processors) and tokenizer_config.json
// "chat_template" (a string, or a list of {"name", "template"} of which "default" is used).
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>

namespace tpserve::runtime {

struct ChatTemplateText {
  std::string text;
  std::string origin;  // "<dir>/tokenizer_config.json" etc., for error messages
};

// The template a model directory ships, or nullopt when it has none. Throws
// tpserve::Error(kDataLoss) naming the file and field when one is malformed (not valid JSON, a
// chat_template that is neither a string nor a list of named templates, a list without "default").
std::optional<ChatTemplateText> find_chat_template(const std::filesystem::path& model_dir);

// A template file given on the command line (--chat-template FILE): the Jinja source itself.
// Throws tpserve::Error(kNotFound) "--chat-template FILE: ..." when it cannot be read.
ChatTemplateText read_chat_template_file(const std::filesystem::path& file);

// The special tokens transformers passes to a template (its special_tokens_map): bos_token,
// eos_token, unk_token, sep_token, pad_token, cls_token, mask_token as text, and
// additional_special_tokens, from tokenizer_config.json then special_tokens_map.json. Tokens set
// to null are left out, as transformers leaves them out.
nlohmann::ordered_json read_special_tokens(const std::filesystem::path& model_dir);

}  // namespace tpserve::runtime
