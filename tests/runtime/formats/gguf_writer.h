// Builds GGUF files byte by byte for the reader's tests and the fuzz seeds: a header, metadata and
// tensor infos written as ggml's docs/gguf.md lays them out, with hooks to break any field.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace tpserve::testing {

class GgufBytes {
 public:
  GgufBytes& raw(const void* data, size_t size) {
    bytes_.append(static_cast<const char*>(data), size);
    return *this;
  }
  template <typename T>
  GgufBytes& put(T value) { return raw(&value, sizeof(T)); }
  GgufBytes& u32(uint32_t value) { return put(value); }
  GgufBytes& u64(uint64_t value) { return put(value); }
  GgufBytes& str(std::string_view text) { u64(text.size()); return raw(text.data(), text.size()); }
  GgufBytes& header(uint64_t tensors, uint64_t kvs, uint32_t version = 3) {
    raw("GGUF", 4);
    u32(version);
    u64(tensors);
    return u64(kvs);
  }
  // Metadata entries (value types from gguf.h: UINT32 = 4, FLOAT32 = 6, BOOL = 7, STRING = 8,
  // ARRAY = 9).
  GgufBytes& kv_u32(std::string_view key, uint32_t value) { str(key); u32(4); return u32(value); }
  GgufBytes& kv_f32(std::string_view key, float value) { str(key); u32(6); return put(value); }
  GgufBytes& kv_str(std::string_view key, std::string_view value) { str(key); u32(8); return str(value); }
  GgufBytes& kv_strings(std::string_view key, const std::vector<std::string>& values) {
    str(key);
    u32(9);
    u32(8);
    u64(values.size());
    for (const std::string& value : values) str(value);
    return *this;
  }
  GgufBytes& tensor(std::string_view name, std::vector<uint64_t> dims, uint32_t type,
                    uint64_t offset) {
    str(name);
    u32(static_cast<uint32_t>(dims.size()));
    for (uint64_t dim : dims) u64(dim);
    u32(type);
    return u64(offset);
  }
  // Zero bytes up to the next multiple of `alignment`.
  GgufBytes& align(size_t alignment = 32) {
    bytes_.append((alignment - bytes_.size() % alignment) % alignment, '\0');
    return *this;
  }
  const std::string& bytes() const { return bytes_; }
  std::string& bytes() { return bytes_; }

 private:
  std::string bytes_;
};

}  // namespace tpserve::testing
