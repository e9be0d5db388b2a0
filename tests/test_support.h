// Shared helpers for tests: where the fixtures are, scratch directories.
#pragma once

#include <filesystem>
#include <string>

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

}  // namespace tpserve::testing
