#include "runtime/formats/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/error.h"

namespace tpserve::runtime {

FileMapping map_file(const std::filesystem::path& path, uint64_t min_bytes, std::string_view what) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    raise(error == ENOENT || error == ENOTDIR ? ErrorCode::kNotFound : ErrorCode::kInvalidArgument,
          "{}: cannot open: {}", path.string(), std::strerror(error));
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    raise(ErrorCode::kInvalidArgument, "{}: not a regular file", path.string());
  }
  const auto size = static_cast<uint64_t>(info.st_size);
  if (size < min_bytes || size == 0) {
    ::close(fd);
    raise(ErrorCode::kDataLoss, "{}: file is {} bytes, too short for {}", path.string(), size, what);
  }
  void* data = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int error = errno;
  ::close(fd);
  if (data == MAP_FAILED) {
    raise(ErrorCode::kResourceExhausted, "{}: mmap of {} bytes failed: {}", path.string(), size,
          std::strerror(error));
  }
  return {static_cast<const std::byte*>(data), static_cast<size_t>(size)};
}

void unmap_file(const FileMapping& mapping) {
  if (mapping.data != nullptr) ::munmap(const_cast<std::byte*>(mapping.data), mapping.size);
}

}  // namespace tpserve::runtime
