// The checkpoint's own chat template, found where transformers looks for it and rendered with what
// transformers passes (messages, tools=None, documents=None, add_generation_prompt, the special
// tokens of tokenizer_config.json): the result must equal Python jinja2's (expected.json).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "common/error.h"
#include "runtime/tokenizer/chat_template.h"
#include "runtime/tokenizer/chat_template_files.h"
#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void write_text(const fs::path& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

class ChatTemplateFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tpserve_chat_template_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    tokenizer_ = Tokenizer::load(testing::fixtures_dir() / "tokenizers" / "qwen2");
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

std::vector<ChatMessage> messages_of(const ordered_json& context) {
  std::vector<ChatMessage> messages;
  for (const auto& m : context["messages"]) {
    ChatMessage message{m["role"], "", std::nullopt};
    if (m["content"].is_string()) {
      message.content = m["content"];
    } else {
      message.content_parts = m["content"];
    }
    messages.push_back(std::move(message));
  }
  return messages;
}

// Every real template, dropped into a model directory's tokenizer_config.json next to its special
// tokens (bos_token written as an AddedToken dict, as many checkpoints do), renders as jinja2 did.
TEST_F(ChatTemplateFilesTest, TokenizerConfigTemplateRendersLikeTransformers) {
  const fs::path fixtures = testing::fixtures_dir() / "chat_templates";
  ordered_json expected = ordered_json::parse(read_text(fixtures / "expected.json"));
  int checked = 0;
  for (const auto& entry : expected["templates"]) {
    ordered_json config = {{"chat_template", read_text(fixtures / entry["file"].get<std::string>())}};
    const ordered_json& first = entry["cases"][0]["context"];
    for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
      if (!first.contains(key)) {
        config[key] = nullptr;
      } else if (std::string(key) == "bos_token") {
        config[key] = {{"__type", "AddedToken"}, {"content", first[key]}, {"lstrip", false}};
      } else {
        config[key] = first[key];
      }
    }
    write_text(dir_ / "tokenizer_config.json", config.dump());
    ChatTemplate tmpl = chat_template_for_model(dir_, *tokenizer_);
    ASSERT_TRUE(tmpl.jinja) << entry["file"];
    for (const auto& c : entry["cases"]) {
      SCOPED_TRACE(entry["file"].get<std::string>() + " " + c["name"].get<std::string>());
      std::vector<ChatMessage> messages = messages_of(c["context"]);
      bool generation = c["context"]["add_generation_prompt"];
      if (c.contains("expected")) {
        EXPECT_EQ(apply_chat_template(tmpl, messages, generation), c["expected"].get<std::string>());
      } else {
        EXPECT_THROW(apply_chat_template(tmpl, messages, generation), Error);
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, 242);
}

TEST_F(ChatTemplateFilesTest, WhereTransformersLooksInItsOrder) {
  write_text(dir_ / "tokenizer_config.json",
             ordered_json({{"chat_template", "config:{{ messages[0].content }}"}, {"eos_token", "E"}}).dump());
  EXPECT_EQ(find_chat_template(dir_)->origin, (dir_ / "tokenizer_config.json").string());
  write_text(dir_ / "chat_template.json", ordered_json({{"chat_template", "json:{{ eos_token }}"}}).dump());
  EXPECT_EQ(find_chat_template(dir_)->text, "json:{{ eos_token }}");
  write_text(dir_ / "chat_template.jinja", "jinja:{{ messages | length }}{{ eos_token }}\n");
  ChatTemplate tmpl = chat_template_for_model(dir_, *tokenizer_);
  std::vector<ChatMessage> one = {{"user", "hi", std::nullopt}};
  EXPECT_EQ(apply_chat_template(tmpl, one), "jinja:1E");
  // --chat-template FILE wins over all of them.
  write_text(dir_ / "override.jinja", "file:{{ add_generation_prompt }}{{ tools }}{{ documents }}");
  EXPECT_EQ(apply_chat_template(chat_template_for_model(dir_, *tokenizer_, dir_ / "override.jinja"), one, false),
            "file:FalseNoneNone");
}

TEST_F(ChatTemplateFilesTest, NamedTemplateListUsesDefault) {
  ordered_json list = ordered_json::array({{{"name", "tool_use"}, {"template", "tools"}},
                                           {{"name", "default"}, {"template", "default:{{ bos_token }}"}}});
  write_text(dir_ / "tokenizer_config.json", ordered_json({{"chat_template", list}, {"bos_token", "<s>"}}).dump());
  EXPECT_EQ(apply_chat_template(chat_template_for_model(dir_, *tokenizer_), std::vector<ChatMessage>{}), "default:<s>");
}

TEST_F(ChatTemplateFilesTest, MalformedTemplatesAreOneLineErrors) {
  auto error_of = [&](const fs::path& file) -> std::pair<ErrorCode, std::string> {
    try {
      chat_template_for_model(dir_, *tokenizer_, file);
    } catch (const Error& e) {
      return {e.code(), e.what()};
    }
    return {ErrorCode::kInternal, "no error"};
  };
  const std::string config = (dir_ / "tokenizer_config.json").string();
  write_text(dir_ / "tokenizer_config.json",
             ordered_json({{"chat_template", ordered_json::array({{{"name", "rag"}, {"template", "x"}}})}}).dump());
  EXPECT_EQ(error_of({}), std::make_pair(ErrorCode::kDataLoss,
                                         config + ": chat_template lists named templates but none is \"default\""));
  write_text(dir_ / "tokenizer_config.json", ordered_json({{"chat_template", 3}}).dump());
  EXPECT_EQ(error_of({}).second, config + ": chat_template is neither a string nor a list of named templates");
  write_text(dir_ / "tokenizer_config.json", ordered_json({{"chat_template", "ok\n{% for m in messages %}"}}).dump());
  EXPECT_EQ(error_of({}), std::make_pair(ErrorCode::kInvalidArgument,
                                         config + ", line 2: unexpected end of template, expected 'endfor'"));
  const fs::path missing = dir_ / "missing.jinja";
  EXPECT_EQ(error_of(missing), std::make_pair(ErrorCode::kNotFound, "--chat-template " + missing.string() + ": no such file"));
  write_text(dir_ / "bad.jinja", "{{ 1 +* 2 }}");
  EXPECT_EQ(error_of(dir_ / "bad.jinja").second, (dir_ / "bad.jinja").string() + ", line 1: unexpected '*'");
}

// A checkpoint without a template (Qwen v1, ChatGLM2) keeps a built-in format; content given as
// parts is joined into text for it.
TEST_F(ChatTemplateFilesTest, BuiltInFormatsWithoutATemplate) {
  write_text(dir_ / "config.json", ordered_json({{"model_type", "qwen"}}).dump());
  ChatTemplate tmpl = chat_template_for_model(dir_, *tokenizer_);
  EXPECT_FALSE(tmpl.jinja);
  EXPECT_EQ(tmpl.format, ChatFormat::kChatML);
  std::vector<ChatMessage> parts = {
      {"user", "", ordered_json::array({{{"type", "text"}, {"text", "a"}}, {{"type", "image"}}, {{"type", "text"}, {"text", "b"}}})}};
  EXPECT_EQ(apply_chat_template(tmpl, parts),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nab<|im_end|>\n"
            "<|im_start|>assistant\n");
  // A llama model_type with a ChatML vocabulary (SmolLM2 without its template) is ChatML, not Llama-2.
  write_text(dir_ / "config.json", ordered_json({{"model_type", "llama"}}).dump());
  EXPECT_EQ(chat_template_for_model(dir_, *tokenizer_).format, ChatFormat::kChatML);
}

TEST_F(ChatTemplateFilesTest, SpecialTokensAsTransformersPassesThem) {
  write_text(dir_ / "tokenizer_config.json",
             ordered_json({{"bos_token", nullptr},
                           {"eos_token", {{"content", "<|im_end|>"}, {"special", true}}},
                           {"additional_special_tokens", {"<a>", {{"content", "<b>"}}}}})
                 .dump());
  write_text(dir_ / "special_tokens_map.json", ordered_json({{"pad_token", "<pad>"}, {"eos_token", "ignored"}}).dump());
  EXPECT_EQ(read_special_tokens(dir_).dump(),
            R"({"eos_token":"<|im_end|>","additional_special_tokens":["<a>","<b>"],"pad_token":"<pad>"})");
}

}  // namespace
}  // namespace tpserve::runtime
