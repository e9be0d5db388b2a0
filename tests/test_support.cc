#include "tests/test_support.h"

#include <unistd.h>

#include <atomic>
#include <fmt/format.h>

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

}  // namespace tpserve::testing
