// `tpserve tokenize`: the model's tokenizer from the command line, no MPI.
//   tpserve tokenize --model DIR --text "你好 world"        prints the ids, comma-separated
//   tpserve tokenize --model DIR --text "hi" --chat         the ids of a one-turn chat prompt
//     (the model's own chat template; --chat-template FILE or --chat-format NAME instead)
//   tpserve tokenize --model DIR --decode 108386,1879      prints the text
//   tpserve tokenize --model DIR --input FILE|-            one line of ids per input line (text or
//     JSONL; launch/tokenize_input.h has the formats); --bench times the encode on that input
// With --no-special the encode adds no BOS/prefix; --skip-special leaves special tokens out of a decode.
#include <fmt/format.h>

#include <iostream>
#include <memory>
#include <optional>

#include "common/error.h"
#include "launch/command.h"
#include "launch/tokenize_input.h"
#include "launch/model_tokenizer.h"
#include "runtime/tokenizer/chat_template.h"
#include "runtime/tokenizer/tokenizer.h"

namespace tpserve::launch {
namespace {

struct TokenizeOptions {
  std::string model_dir;
  std::string text;
  std::string decode;
  std::string chat_format;
  std::string chat_template_file;
  bool chat = false;
  bool no_special = false;
  bool skip_special = false;
  TokenizeInputOptions input;  // --input
};

std::vector<int32_t> parse_ids(const std::string& list) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    std::string item = list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    size_t used = 0;
    long long value = -1;
    try {
      value = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || item.find_first_not_of(" \t", used) != std::string::npos || value < 0 || value > INT32_MAX) {
      raise(ErrorCode::kInvalidArgument, "--decode: \"{}\" is not a token id (expected e.g. 1,2,3)", item);
    }
    ids.push_back(static_cast<int32_t>(value));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return ids;
}

runtime::ChatTemplate load_chat_template(const TokenizeOptions& options, const runtime::Tokenizer& tokenizer) {
  runtime::ChatTemplate tmpl = runtime::chat_template_for_model(options.model_dir, tokenizer, options.chat_template_file);
  if (!options.chat_format.empty()) {
    auto format = runtime::parse_chat_format(options.chat_format);
    if (!format) raise(ErrorCode::kInvalidArgument, "--chat-format: unknown format \"{}\"", options.chat_format);
    tmpl.jinja.reset();  // a built-in format instead of the model's own template
    tmpl.format = *format;
  }
  return tmpl;
}

int run_tokenize(const TokenizeOptions& options) {
  auto tokenizer = load_tokenizer(options.model_dir);
  if (!options.input.input.empty()) {
    TokenizeInputOptions input = options.input;
    input.chat = options.chat;
    input.add_special = !options.no_special;
    std::optional<runtime::ChatTemplate> tmpl;
    ChatTemplateSource chat_template = [&]() -> const runtime::ChatTemplate& {
      if (!tmpl) tmpl = load_chat_template(options, *tokenizer);
      return *tmpl;
    };
    return run_tokenize_input(*tokenizer, chat_template, input);
  }
  if (!options.decode.empty()) {
    std::vector<int32_t> ids = parse_ids(options.decode);
    std::cout << tokenizer->decode(ids, options.skip_special) << "\n";
    return 0;
  }
  std::string text = options.text;
  bool add_special = !options.no_special;
  if (options.chat) {
    runtime::ChatTemplate tmpl = load_chat_template(options, *tokenizer);
    std::vector<runtime::ChatMessage> messages = {{"user", text}};
    text = runtime::apply_chat_template(tmpl, messages);
    add_special = false;  // the template writes its own BOS / prefix tokens
  }
  std::vector<int32_t> ids = tokenizer->encode(text, add_special);
  std::cout << fmt::format("{}", fmt::join(ids, ",")) << "\n";
  return 0;
}

}  // namespace

void register_tokenize_command(CLI::App& app, CommandRunner& runner) {
  auto options = std::make_shared<TokenizeOptions>();
  CLI::App* command = app.add_subcommand("tokenize", "Encode text to token ids, or decode ids to text");
  command->add_option("--model", options->model_dir, "Model directory (tokenizer.json / qwen.tiktoken / tokenizer.model) or GGUF file")
      ->required();
  auto* text = command->add_option("--text", options->text, "Text to encode");
  auto* decode = command->add_option("--decode", options->decode, "Comma-separated token ids to decode");
  text->excludes(decode);
  auto* input = command->add_option("--input", options->input.input,
                                    "Encode every line of FILE (- for standard input): text lines, or JSONL with "
                                    "\"text\", \"prompt\" or \"messages\"; one line of ids out per line in");
  input->excludes(text)->excludes(decode);
  command->add_option("--input-format", options->input.input_format,
                      "text or jsonl (default: jsonl for a .jsonl file, else text)")
      ->check(CLI::IsMember({"text", "jsonl"}))
      ->needs(input);
  command->add_option("--output-format", options->input.output_format,
                      "ids: space-separated ids (default); json: a JSON array per line")
      ->check(CLI::IsMember({"ids", "json"}))
      ->needs(input);
  command->add_option("--bench", options->input.bench_rounds,
                      "Also time the encode of the whole --input N times; the best round's MB/s goes to stderr")
      ->expected(0, 1)
      ->default_str("3")
      ->check(CLI::Range(1, 1000))
      ->needs(input);
  command->add_flag("--quiet", [options](int64_t) { options->input.progress = false; },
                    "No progress lines on stderr for a long --input");
  command->add_flag("--chat", options->chat, "Encode --text as a one-turn chat prompt (the model's chat template)");
  command->add_option("--chat-format", options->chat_format,
                      "Use a built-in chat format instead: chatml, internlm2, chatglm2, chatglm3, llama2, llama3");
  auto* chat_template = command->add_option("--chat-template", options->chat_template_file,
                                            "Jinja chat template file, used instead of the one the model ships");
  chat_template->excludes(command->get_option("--chat-format"));
  command->add_flag("--no-special", options->no_special, "Do not add BOS / prefix tokens when encoding");
  command->add_flag("--skip-special", options->skip_special, "Leave special tokens out of the decoded text");
  command->callback([&runner, options, text, decode, input] {
    if (text->count() == 0 && decode->count() == 0 && input->count() == 0) {
      throw CLI::ValidationError("tokenize", "give --text, --decode or --input");
    }
    runner = [options] { return run_tokenize(*options); };
  });
}

}  // namespace tpserve::launch
