// A chat template (runtime/tokenizer/jinja/: the Jinja subset that renders tokenizer_config.json's
// chat_template, chat_template.json or --chat-template FILE, code shipped with a checkpoint): any
// source either parses or raises tpserve::Error, and one that parses renders a fixed conversation
// (system, user with Chinese text, assistant, user; and again with the content as a list of parts)
// within tight limits or raises tpserve::Error -- never a crash, a hang or unbounded memory.
#include <cstdlib>
#include <string_view>

#include "common/error.h"
#include "runtime/tokenizer/jinja/template.h"

namespace {

nlohmann::ordered_json conversation(bool parts) {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  const std::pair<const char*, const char*> turns[] = {
      {"system", "You are helpful."}, {"user", "Hi, 你好"}, {"assistant", "Hello!"},
      {"user", "Again {{ and }} %}"}};
  for (const auto& [role, text] : turns) {
    nlohmann::ordered_json content = text;
    if (parts) content = nlohmann::ordered_json::array({{{"type", "text"}, {"text", text}}});
    messages.push_back({{"role", role}, {"content", content}});
  }
  return {{"messages", messages}, {"tools", nullptr}, {"documents", nullptr},
          {"add_generation_prompt", true}, {"bos_token", "<s>"}, {"eos_token", "</s>"}};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tpserve;
  static const nlohmann::ordered_json plain = conversation(false);
  static const nlohmann::ordered_json parts = conversation(true);
  // Far below the defaults (64 MiB, 10^7 steps), so that an input is milliseconds.
  runtime::jinja::RenderLimits limits;
  limits.max_output_bytes = size_t{1} << 20;
  limits.max_steps = 20'000;
  const std::string_view source(reinterpret_cast<const char*>(data), size);
  try {
    const runtime::jinja::Template chat(source, "chat_template");
    for (const auto* context : {&plain, &parts}) {
      try {
        const std::string text = chat.render(*context, limits);
        if (text.size() > limits.max_output_bytes) std::abort();  // the limit did not hold
      } catch (const Error&) {
      }
    }
  } catch (const Error&) {
  }
  return 0;
}
