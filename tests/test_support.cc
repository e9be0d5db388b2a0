#include "tests/test_support.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fmt/format.h>

#include "common/log.h"

namespace tpserve::testing {

std::filesystem::path fixtures_dir() { return TPSERVE_FIXTURES_DIR; }

std::filesystem::path shared_dir() { return TPSERVE_SHARED_DIR; }

ScratchDir::ScratchDir(const std::string& tag) {
  static std::atomic<int> counter{0};
  path_ = std::filesystem::temp_directory_path() /
          fmt::format("tpserve-{}-{}-{}", tag, ::getpid(), counter++);
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

ScratchDir::~ScratchDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

LogCapture::LogCapture()
    : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(stream_)),
      previous_level_(static_cast<int>(log().level())) {
  sink_->set_pattern("[%l] %v");
  log().sinks().push_back(sink_);
  log().set_level(spdlog::level::debug);
}

LogCapture::~LogCapture() {
  auto& sinks = log().sinks();
  sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  log().set_level(static_cast<spdlog::level::level_enum>(previous_level_));
}

}  // namespace tpserve::testing
