#include "launch/tokenize_input.h"

#include <fmt/format.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/error.h"
#include "common/json_brief.h"
#include "runtime/tokenizer/utf8.h"

namespace tpserve::launch {
namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// What one input line asks to encode.
struct Item {
  std::string text;
  bool add_special = true;
  bool blank = false;  // a blank JSONL line: a blank output line
};

// Reads lines with getline(3) from a file or standard input; errors name the file.
class LineReader {
 public:
  explicit LineReader(const std::string& input) : name_(input == "-" ? "<stdin>" : input) {
    file_ = input == "-" ? stdin : std::fopen(input.c_str(), "rb");
    if (file_ == nullptr) raise(ErrorCode::kNotFound, "--input {}: cannot open", input);
  }
  ~LineReader() {
    std::free(buffer_);
    if (file_ != stdin) std::fclose(file_);
  }
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // The next line without its "\n", or false at the end of the input.
  bool next(std::string_view& line) {
    ssize_t length = ::getline(&buffer_, &capacity_, file_);
    if (length < 0) {
      if (std::ferror(file_)) raise(ErrorCode::kDataLoss, "--input {}: read error after line {}", name_, number_);
      return false;
    }
    ++number_;
    bytes_ += static_cast<size_t>(length);
    if (length > 0 && buffer_[length - 1] == '\n') --length;
    line = std::string_view(buffer_, static_cast<size_t>(length));
    return true;
  }
  const std::string& name() const { return name_; }
  int64_t number() const { return number_; }
  size_t bytes() const { return bytes_; }

 private:
  std::string name_;
  std::FILE* file_ = nullptr;
  char* buffer_ = nullptr;
  size_t capacity_ = 0;
  int64_t number_ = 0;
  size_t bytes_ = 0;
};

// A bad input line, with the reason; the caller adds the file and line number.
struct LineError {
  std::string message;
};

template <typename... Args>
[[noreturn]] void line_error(fmt::format_string<Args...> format, Args&&... args) {
  throw LineError{fmt::format(format, std::forward<Args>(args)...)};
}

class ItemReader {
 public:
  ItemReader(const TokenizeInputOptions& options, const ChatTemplateSource& chat_template)
      : options_(options), chat_template_(chat_template), jsonl_(is_jsonl(options)) {}

  Item parse(std::string_view line) const {
    if (size_t bad = runtime::utf8::find_invalid(line); bad != std::string_view::npos) {
      line_error("invalid UTF-8 at byte offset {}", bad);
    }
    if (!jsonl_) {
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      return text_item(std::string(line), "text");
    }
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) return Item{{}, false, true};
    const Json root = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (root.is_discarded()) line_error("not valid JSON");
    if (!root.is_object()) line_error("expected a JSON object, got {}", root.type_name());
    const int fields = static_cast<int>(root.contains("text") + root.contains("prompt") + root.contains("messages"));
    if (fields != 1) line_error("expected exactly one of text, prompt or messages, got {}", fields);
    if (root.contains("messages")) return messages_item(root["messages"]);
    const char* field = root.contains("text") ? "text" : "prompt";
    const Json& value = root[field];
    if (!value.is_string()) line_error("{}: expected a string, got {}", field, json_brief(value));
    return text_item(value.get<std::string>(), field);
  }

 private:
  static bool is_jsonl(const TokenizeInputOptions& options) {
    if (!options.input_format.empty()) return options.input_format == "jsonl";
    return options.input.size() > 6 && options.input.ends_with(".jsonl");
  }

  Item text_item(std::string text, const char* field) const {
    if (!options_.chat) return Item{std::move(text), options_.add_special};
    std::vector<runtime::ChatMessage> messages = {{"user", std::move(text)}};
    return Item{render(messages, field), false};
  }

  Item messages_item(const Json& value) const {
    if (!value.is_array() || value.empty()) line_error("messages: expected a non-empty list");
    std::vector<runtime::ChatMessage> messages;
    for (size_t i = 0; i < value.size(); ++i) {
      const Json& m = value[i];
      if (!m.is_object() || !m.contains("role") || !m.contains("content") || !m["role"].is_string() ||
          !m["content"].is_string()) {
        line_error("messages[{}]: expected {{\"role\": \"...\", \"content\": \"...\"}}, got {}", i, json_brief(m));
      }
      messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    }
    // The rendered text already carries the template's BOS and role tokens.
    return Item{render(messages, "messages"), false};
  }

  std::string render(const std::vector<runtime::ChatMessage>& messages, const char* field) const {
    try {
      return runtime::apply_chat_template(chat_template_(), messages);
    } catch (const Error& e) {
      line_error("{}: {}", field, e.what());
    }
  }

  const TokenizeInputOptions& options_;
  const ChatTemplateSource& chat_template_;
  bool jsonl_;
};

// Output lines, buffered and written with fwrite (the ids of a large file are most of the work of
// writing them; iostreams would be slower than the encode).
class IdWriter {
 public:
  explicit IdWriter(bool json) : json_(json) {}
  ~IdWriter() { flush(); }
  IdWriter(const IdWriter&) = delete;
  IdWriter& operator=(const IdWriter&) = delete;

  void write(const std::vector<int32_t>& ids) {
    if (json_) buffer_ += '[';
    char digits[16];
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i > 0) buffer_ += json_ ? ',' : ' ';
      auto [end, ec] = std::to_chars(digits, digits + sizeof(digits), ids[i]);
      buffer_.append(digits, end);
    }
    if (json_) buffer_ += ']';
    buffer_ += '\n';
    if (buffer_.size() >= (1 << 16)) flush();
  }
  void write_blank() {
    buffer_ += '\n';
  }
  void flush() {
    if (!buffer_.empty()) std::fwrite(buffer_.data(), 1, buffer_.size(), stdout);
    std::fflush(stdout);
    buffer_.clear();
  }

 private:
  bool json_;
  std::string buffer_;
};

// "tokenize: 120000 lines, 48.2 MB, 11.9 MB/s" on stderr every 2 s, so short inputs print nothing.
class Progress {
 public:
  explicit Progress(bool on) : on_(on), start_(Clock::now()), last_(start_) {}
  void update(const LineReader& reader) {
    if (!on_ || (reader.number() & 1023) != 0) return;
    auto now = Clock::now();
    if (now - last_ < std::chrono::seconds(2)) return;
    last_ = now;
    double seconds = std::chrono::duration<double>(now - start_).count();
    std::fprintf(stderr, "tokenize: %lld lines, %.1f MB, %.1f MB/s\n", static_cast<long long>(reader.number()),
                 reader.bytes() / 1e6, reader.bytes() / 1e6 / seconds);
  }

 private:
  bool on_;
  Clock::time_point start_, last_;
};

std::vector<int32_t> encode_line(const runtime::Tokenizer& tokenizer, const Item& item) {
  try {
    return tokenizer.encode(item.text, item.add_special);
  } catch (const Error& e) {
    line_error("{}", e.what());  // invalid UTF-8 from a chat template, or what the tokenizer refuses
  }
}

// CPU time of the calling thread: what one thread's throughput is, however busy the machine.
double thread_cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

// --bench: the whole input in memory, encoded `rounds` times; the best round's throughput, by the
// thread's CPU time (and by the wall clock, which a busy machine stretches).
void run_bench(const runtime::Tokenizer& tokenizer, const std::vector<Item>& items, int rounds) {
  size_t bytes = 0, tokens = 0;
  for (const Item& item : items) bytes += item.text.size();
  double best_cpu = 1e30, best_wall = 1e30;
  for (int round = 0; round < rounds; ++round) {
    const double cpu_start = thread_cpu_seconds();
    const auto wall_start = Clock::now();
    size_t count = 0;
    for (const Item& item : items) count += tokenizer.encode(item.text, item.add_special).size();
    best_cpu = std::min(best_cpu, thread_cpu_seconds() - cpu_start);
    best_wall = std::min(best_wall, std::chrono::duration<double>(Clock::now() - wall_start).count());
    tokens = count;
  }
  best_cpu = std::max(best_cpu, 1e-9);
  std::fprintf(stderr,
               "bench: %zu texts, %zu bytes, %zu tokens; encode, best of %d rounds, one thread: %.4f s CPU = %.2f MB/s "
               "(wall clock %.4f s = %.2f MB/s)\n",
               items.size(), bytes, tokens, rounds, best_cpu, bytes / best_cpu / 1e6, best_wall, bytes / best_wall / 1e6);
}

}  // namespace

int run_tokenize_input(const runtime::Tokenizer& tokenizer, const ChatTemplateSource& chat_template,
                       const TokenizeInputOptions& options) {
  LineReader reader(options.input);
  ItemReader items(options, chat_template);
  IdWriter writer(options.output_format == "json");
  Progress progress(options.progress && options.bench_rounds == 0);
  std::vector<Item> kept;  // --bench keeps every item to encode it again
  std::string_view line;
  while (reader.next(line)) {
    try {
      Item item = items.parse(line);
      if (item.blank) {
        writer.write_blank();
      } else {
        writer.write(encode_line(tokenizer, item));
      }
      if (options.bench_rounds > 0 && !item.blank) kept.push_back(std::move(item));
    } catch (const LineError& e) {
      writer.flush();
      raise(ErrorCode::kInvalidArgument, "{}:{}: {}", reader.name(), reader.number(), e.message);
    }
    progress.update(reader);
  }
  writer.flush();
  if (options.bench_rounds > 0) run_bench(tokenizer, kept, options.bench_rounds);
  return 0;
}

}  // namespace tpserve::launch
