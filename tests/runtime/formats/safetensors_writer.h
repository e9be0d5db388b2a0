// Test-only safetensors writer: builds synthetic checkpoints (and deliberately broken ones) for
// tests of the reader, the weight loader and the model. Header-only.
//
// Layout written (the format the reference Rust crate reads): 8-byte little-endian u64 header
// length N, N bytes of JSON padded with spaces to a multiple of 8 (as the reference writer does),
// then the tensors' bytes back to back in the order they were added.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "common/dtype.h"

namespace tpserve::testing {

// Raw little-endian bytes of a vector of scalars (uint16_t bit patterns, int32_t, float, ...).
template <typename T>
std::vector<std::byte> to_bytes(const std::vector<T>& values) {
  std::vector<std::byte> bytes(values.size() * sizeof(T));
  if (!bytes.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

struct TensorSpec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;
};

// Ways to break a file on purpose.
struct Corruption {
  // Edits the header JSON (tensor entries already carry their data_offsets) before it is written.
  std::function<void(nlohmann::ordered_json& header)> edit_header;
  // Written as the header instead of the JSON (invalid JSON, odd padding, ...).
  std::optional<std::string> raw_header;
  // Written in the 8-byte prefix instead of the true header length.
  std::optional<uint64_t> header_length;
  // < 0 drops that many bytes from the end of the file (a truncated file, possibly shorter than
  // 8 bytes); > 0 appends that many zero bytes after the data section.
  int64_t data_bytes_delta = 0;

  static Corruption edit(std::function<void(nlohmann::ordered_json& header)> edit_header) {
    Corruption corruption;
    corruption.edit_header = std::move(edit_header);
    return corruption;
  }
  static Corruption raw(std::string header) {
    Corruption corruption;
    corruption.raw_header = std::move(header);
    return corruption;
  }
  static Corruption length(uint64_t header_length) {
    Corruption corruption;
    corruption.header_length = header_length;
    return corruption;
  }
  static Corruption resize_data(int64_t delta) {
    Corruption corruption;
    corruption.data_bytes_delta = delta;
    return corruption;
  }
};

class SafetensorsWriter {
 public:
  SafetensorsWriter& add(std::string name, DType dtype, std::vector<int64_t> shape,
                         std::vector<std::byte> bytes) {
    tensors_.push_back({std::move(name), dtype, std::move(shape), std::move(bytes)});
    return *this;
  }

  SafetensorsWriter& add_f32(std::string name, std::vector<int64_t> shape,
                             const std::vector<float>& values) {
    return add(std::move(name), DType::kF32, std::move(shape), to_bytes(values));
  }

  // Rounds to nearest even, as torch does when it casts to bfloat16 / float16.
  SafetensorsWriter& add_bf16(std::string name, std::vector<int64_t> shape,
                              const std::vector<float>& values) {
    return add(std::move(name), DType::kBF16, std::move(shape),
               to_bytes(narrow(values, f32_to_bf16)));
  }

  SafetensorsWriter& add_f16(std::string name, std::vector<int64_t> shape,
                             const std::vector<float>& values) {
    return add(std::move(name), DType::kF16, std::move(shape),
               to_bytes(narrow(values, f32_to_f16)));
  }

  SafetensorsWriter& add_i32(std::string name, std::vector<int64_t> shape,
                             const std::vector<int32_t>& values) {
    return add(std::move(name), DType::kI32, std::move(shape), to_bytes(values));
  }

  SafetensorsWriter& metadata(std::string key, std::string value) {
    metadata_[std::move(key)] = std::move(value);
    return *this;
  }

  const std::vector<TensorSpec>& tensors() const { return tensors_; }

  // The header the file will carry: metadata first, then tensors in the order added, with
  // contiguous data_offsets.
  nlohmann::ordered_json header() const {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    uint64_t offset = 0;
    for (const TensorSpec& tensor : tensors_) {
      header[tensor.name] = {{"dtype", std::string(dtype_name(tensor.dtype))},
                             {"shape", tensor.shape},
                             {"data_offsets", {offset, offset + tensor.bytes.size()}}};
      offset += tensor.bytes.size();
    }
    return header;
  }

  void write(const std::filesystem::path& path, const Corruption& corruption = {}) const {
    std::string text;
    if (corruption.raw_header) {
      text = *corruption.raw_header;
    } else {
      nlohmann::ordered_json json = header();
      if (corruption.edit_header) corruption.edit_header(json);
      text = json.dump();
      text.append((8 - text.size() % 8) % 8, ' ');
    }
    std::string file(8, '\0');
    const uint64_t length = corruption.header_length.value_or(text.size());
    for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((length >> (8 * i)) & 0xff);
    file += text;
    for (const TensorSpec& tensor : tensors_) {
      file.append(reinterpret_cast<const char*>(tensor.bytes.data()), tensor.bytes.size());
    }
    if (corruption.data_bytes_delta < 0) {
      const auto drop = static_cast<size_t>(-corruption.data_bytes_delta);
      file.resize(file.size() > drop ? file.size() - drop : 0);
    } else {
      file.append(static_cast<size_t>(corruption.data_bytes_delta), '\0');
    }
    write_file(path, file);
  }

  static void write_file(const std::filesystem::path& path, const std::string& contents) {
    std::ofstream stream(path, std::ios::binary | std::ios::trunc);
    stream.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    if (!stream) throw std::runtime_error("cannot write " + path.string());
  }

 private:
  template <typename Narrow>
  static std::vector<uint16_t> narrow(const std::vector<float>& values, Narrow convert) {
    std::vector<uint16_t> bits;
    bits.reserve(values.size());
    for (float value : values) bits.push_back(convert(value));
    return bits;
  }

  std::vector<TensorSpec> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Writes `dir`/model.safetensors.index.json mapping each tensor to its shard file name.
inline void write_index(const std::filesystem::path& dir,
                        const std::map<std::string, std::string>& weight_map,
                        const std::map<std::string, std::string>& metadata = {}) {
  nlohmann::ordered_json index = {{"metadata", metadata}, {"weight_map", weight_map}};
  SafetensorsWriter::write_file(dir / "model.safetensors.index.json", index.dump(2));
}

// Writes an index with arbitrary (possibly broken) contents.
inline void write_index_raw(const std::filesystem::path& dir, const std::string& contents) {
  SafetensorsWriter::write_file(dir / "model.safetensors.index.json", contents);
}

}  // namespace tpserve::testing
