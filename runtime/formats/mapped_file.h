// A whole file mmap'ed read-only, shared by the checkpoint readers (safetensors, GGUF).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>

namespace tpserve::runtime {

struct FileMapping {
  const std::byte* data = nullptr;
  size_t size = 0;
};

// mmaps `path` read-only and private; the descriptor is closed at once (the mapping keeps the file
// alive), so a checkpoint of many files holds no descriptors. Errors name the file: kNotFound when
// it does not exist, kInvalidArgument when it is not a regular file, kDataLoss when it is shorter
// than `min_bytes` (`what` says what those bytes hold), kResourceExhausted when mmap fails.
FileMapping map_file(const std::filesystem::path& path, uint64_t min_bytes, std::string_view what);

void unmap_file(const FileMapping& mapping);

}  // namespace tpserve::runtime
