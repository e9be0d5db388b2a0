#include "runtime/engine/batch_job.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/error.h"
#include "common/log.h"

namespace tpserve::runtime {
namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

}  // namespace

BatchRecorded recorded_batch_ids(const std::filesystem::path& output) {
  BatchRecorded recorded;
  std::set<std::string>& ids = recorded.ids;
  std::error_code ec;
  if (!std::filesystem::exists(output, ec)) return recorded;
  std::ifstream in(output, std::ios::binary);
  if (!in) raise(ErrorCode::kNotFound, "{}: cannot read the output file", output.string());
  const std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t complete = content.rfind('\n') == std::string::npos ? 0 : content.rfind('\n') + 1;
  if (complete < content.size()) {
    log().warn("{}: dropping a last line cut short ({} bytes) — its request runs again",
               output.string(), content.size() - complete);
    in.close();
    std::filesystem::resize_file(output, complete, ec);
    if (ec) raise(ErrorCode::kInternal, "{}: cannot truncate: {}", output.string(), ec.message());
  }
  size_t begin = 0;
  int64_t line = 0;
  while (begin < complete) {
    const size_t end = content.find('\n', begin);
    ++line;
    const Json record = Json::parse(content.substr(begin, end - begin), nullptr, false);
    if (record.is_object() && record.contains("id") &&
        (record["id"].is_string() || record["id"].is_number_integer())) {
      ids.insert(record["id"].is_string() ? record["id"].get<std::string>()
                                          : std::to_string(record["id"].get<int64_t>()));
    } else if (record.is_object() && record.contains("error") && record.contains("line") &&
               record["line"].is_number_integer()) {
      recorded.error_lines.insert(record["line"].get<int64_t>());
    } else {
      log().warn("{}:{}: not a result record; ignored", output.string(), line);
    }
    begin = end + 1;
  }
  return recorded;
}

namespace {

// The output file, one flushed line per record.
class RecordWriter {
 public:
  explicit RecordWriter(const std::filesystem::path& path) : path_(path) {
    file_ = std::fopen(path.c_str(), "ab");
    if (file_ == nullptr) raise(ErrorCode::kNotFound, "{}: cannot open for appending", path.string());
  }
  ~RecordWriter() {
    if (file_ != nullptr) std::fclose(file_);
  }
  RecordWriter(const RecordWriter&) = delete;
  RecordWriter& operator=(const RecordWriter&) = delete;

  void write(const Json& record) {
    const std::string text = record.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
    if (std::fwrite(text.data(), 1, text.size(), file_) != text.size() || std::fflush(file_) != 0) {
      raise(ErrorCode::kResourceExhausted, "{}: write failed", path_.string());
    }
  }

 private:
  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
};

Json id_json(const BatchItem& item) {
  if (item.id_is_number) return Json(std::stoll(item.id));
  return Json(item.id);
}

struct Choice {
  std::string text;
  std::vector<int32_t> token_ids;
  std::vector<float> logprobs;  // of each token, when the request asks for logprobs
  FinishReason finish = FinishReason::kNone;
};

struct InFlight {
  const BatchItem* item;
  std::shared_ptr<RequestStream> stream;
  std::map<int32_t, Choice> choices;
  Usage usage;
};

std::string clock_text(double seconds) {
  const auto s = static_cast<int64_t>(seconds);
  return s >= 3600 ? fmt::format("{}:{:02d}:{:02d}", s / 3600, s / 60 % 60, s % 60)
                   : fmt::format("{:02d}:{:02d}", s / 60, s % 60);
}

class Progress {
 public:
  Progress(bool enabled, int64_t total) : enabled_(enabled), total_(total), tty_(isatty(2) != 0) {}

  void update(const BatchSummary& s, bool final = false) {
    if (!enabled_) return;
    const auto now = Clock::now();
    const double since = std::chrono::duration<double>(now - last_).count();
    if (!final && since < (tty_ ? 0.25 : 5.0)) return;
    last_ = now;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const int64_t done = s.completed + s.failed;
    const double rate = elapsed > 0 ? s.completion_tokens / elapsed : 0.0;
    const double eta = done > 0 ? elapsed * static_cast<double>(total_ - done) / done : 0.0;
    constexpr int kWidth = 24;
    const int filled = total_ > 0 ? static_cast<int>(kWidth * done / total_) : kWidth;
    std::string bar(static_cast<size_t>(filled), '=');
    bar.resize(kWidth, ' ');
    std::fprintf(stderr, "%sbatch [%s] %lld/%lld requests (%lld failed), %lld tokens, %.1f tok/s, %s elapsed, ETA %s%s",
                 tty_ ? "\r" : "", bar.c_str(), static_cast<long long>(done),
                 static_cast<long long>(total_), static_cast<long long>(s.failed),
                 static_cast<long long>(s.completion_tokens), rate, clock_text(elapsed).c_str(),
                 done > 0 ? clock_text(eta).c_str() : "--:--", tty_ && !final ? "" : "\n");
    std::fflush(stderr);
  }

 private:
  bool enabled_;
  int64_t total_;
  bool tty_;
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_ = start_ - std::chrono::hours(1);
};

BatchSummary drive(Engine& engine, const BatchContext& context, const BatchOptions& options) {
  const auto start = Clock::now();
  BatchSummary summary;
  const BatchRecorded recorded = recorded_batch_ids(options.output);
  std::ifstream in(options.input, std::ios::binary);
  if (!in) raise(ErrorCode::kNotFound, "{}: cannot open the input file", options.input.string());
  RecordWriter writer(options.output);
  const std::string source = options.input.string();

  std::vector<BatchItem> items;
  std::map<std::string, int64_t> first_line;
  std::string line;
  int64_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank lines
    BatchItem item = parse_batch_line(line, line_number, context);
    ++summary.lines;
    bool usable_id = !item.id.empty();
    if (usable_id) {
      const auto [it, fresh] = first_line.emplace(item.id, line_number);
      if (!fresh) {
        item.error = fmt::format("id: '{}' repeats line {}", item.id, it->second);
        usable_id = false;  // the record must not stand for the first line's request
      }
    }
    if (usable_id ? recorded.ids.count(item.id) != 0 : recorded.error_lines.count(line_number) != 0) {
      ++summary.skipped;
      continue;
    }
    if (!item.error.empty()) {
      log().warn("{}:{}: {}", source, line_number, item.error);
      Json record = {{"id", usable_id ? id_json(item) : Json(nullptr)},
                     {"line", line_number}, {"error", item.error}};
      writer.write(record);
      ++summary.failed;
      continue;
    }
    items.push_back(std::move(item));
  }
  if (in.bad()) raise(ErrorCode::kDataLoss, "{}: read error", source);
  log().info("batch: {} lines in {}: {} to run, {} already in {}, {} malformed", summary.lines,
             source, items.size(), summary.skipped, options.output.string(), summary.failed);

  Progress progress(options.progress, static_cast<int64_t>(items.size()) + summary.failed);
  std::vector<InFlight> flying;
  size_t next = 0;
  const auto write_error = [&](const InFlight& f, const Error& e) {
    writer.write({{"id", id_json(*f.item)}, {"line", f.item->line}, {"error", e.what()}});
    log().warn("{}:{}: {}", source, f.item->line, e.what());
    ++summary.failed;
  };
  while ((next < items.size() || !flying.empty()) && !summary.interrupted) {
    while (next < items.size() && flying.size() < options.max_in_flight) {
      InFlight f{&items[next], nullptr, {}, {}};
      ++next;
      try {
        f.stream = engine.submit(f.item->request);
        flying.push_back(std::move(f));
      } catch (const Error& e) {
        if (e.code() == ErrorCode::kUnavailable) {
          summary.interrupted = true;
          break;
        }
        write_error(f, e);
      }
    }
    bool progressed = false;
    for (size_t i = 0; i < flying.size();) {
      InFlight& f = flying[i];
      bool closed = false;
      while (auto event = f.stream->pop(std::chrono::milliseconds(0))) {
        progressed = true;
        for (SequenceDelta& delta : event->deltas) {
          Choice& choice = f.choices[delta.index];
          choice.text += delta.text;
          choice.token_ids.insert(choice.token_ids.end(), delta.token_ids.begin(), delta.token_ids.end());
          choice.logprobs.insert(choice.logprobs.end(), delta.logprobs.begin(), delta.logprobs.end());
          summary.completion_tokens += static_cast<int64_t>(delta.token_ids.size());
          if (delta.finish_reason != FinishReason::kNone) choice.finish = delta.finish_reason;
        }
        if (event->error) {
          // The engine going away is not the request's fault: no record, a re-run retries it.
          if (event->error->code() == ErrorCode::kUnavailable) {
            summary.interrupted = true;
          } else {
            write_error(f, *event->error);
          }
          closed = true;
          break;
        }
        if (event->done) {
          Json choices = Json::array();
          for (const auto& [index, c] : f.choices) {
            Json choice = {{"index", index}, {"text", c.text}, {"token_ids", c.token_ids},
                           {"finish_reason", finish_reason_name(c.finish)}};
            if (!c.logprobs.empty()) choice["logprobs"] = c.logprobs;
            choices.push_back(std::move(choice));
          }
          writer.write({{"id", id_json(*f.item)},
                        {"choices", std::move(choices)},
                        {"usage", {{"prompt_tokens", event->usage.prompt_tokens},
                                   {"completion_tokens", event->usage.completion_tokens}}}});
          summary.prompt_tokens += event->usage.prompt_tokens;
          ++summary.completed;
          closed = true;
          break;
        }
      }
      if (closed) {
        flying.erase(flying.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
    progress.update(summary);
    if (!progressed) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  for (InFlight& f : flying) f.stream->cancel();
  summary.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  progress.update(summary, /*final=*/true);
  return summary;
}

}  // namespace

BatchSummary run_batch(Engine& engine, const BatchContext& context, const BatchOptions& options) {
  try {
    BatchSummary summary = drive(engine, context, options);
    engine.shutdown(std::chrono::milliseconds(0));
    return summary;
  } catch (...) {
    engine.shutdown(std::chrono::milliseconds(0));
    throw;
  }
}

}  // namespace tpserve::runtime
