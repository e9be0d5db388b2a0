// Shared helpers for tests: where the fixtures are, scratch directories.
#pragma once

#include <filesystem>
#include <memory>
#include <sstream>
#include <string>

#include <spdlog/sinks/ostream_sink.h>

namespace tpserve::testing {

// tests/fixtures in the source tree.
std::filesystem::path fixtures_dir();

// ../shared beside the checkout (real tokenizer data); may not exist.
std::filesystem::path shared_dir();

// A fresh empty directory under the system temp dir, removed when the object dies.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Copies every line tpserve's logger writes (at debug and above) while the object lives.
class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
  std::string text() const { return stream_.str(); }

 private:
  std::ostringstream stream_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
  int previous_level_;
};

}  // namespace tpserve::testing
