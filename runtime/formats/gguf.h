// GGUF, llama.cpp's single-file checkpoint (facts from ggml's docs/gguf.md and gguf.cpp):
//   "GGUF" magic, u32 version (2 or 3), u64 tensor_count, u64 metadata_kv_count,
//   metadata: key (u64 length + bytes), u32 value type, value (arrays: u32 element type, u64 count,
//   elements), then per tensor: name, u32 n_dims (<= 4), u64 ne[n_dims] (ne[0] is the contiguous
//   dimension), u32 ggml_type, u64 offset into the data section; the data section starts at the next
//   multiple of general.alignment (u32, default 32) and every tensor offset is a multiple of it.
// Little-endian only (version 3 also allows big-endian files; they are refused by their version
// bytes). The whole file is untrusted: every count, size and offset is checked against the file
// before it is used, and each problem is one line naming the file and the field.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/formats/ggml_blocks.h"
#include "runtime/formats/mapped_file.h"

namespace tpserve::runtime {

struct GgufTensor {
  std::string name;
  GgmlType type = GgmlType::kF32;
  std::vector<int64_t> dims;  // ggml order: dims[0] is the row length (contiguous)
  uint64_t offset = 0;        // inside the data section
  uint64_t bytes = 0;

  // The tensor as a row-major matrix, as PyTorch sees it (shape = reversed dims):
  // cols = dims[0], rows = the product of the others.
  int64_t cols() const { return dims[0]; }
  int64_t rows() const;
  std::vector<int64_t> shape() const;  // reversed dims
  uint64_t row_bytes() const;
};

class GgufFile {
 public:
  // Maps and validates the whole header. Throws tpserve::Error naming the file and the field.
  static std::unique_ptr<GgufFile> open(const std::filesystem::path& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  // True when the file starts with the GGUF magic (a quick test; open() validates).
  static bool looks_like_gguf(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  // Every metadata key -> its value: integers, floats, bools and strings as JSON scalars, arrays
  // as JSON arrays. Strings keep their bytes (GGUF does not promise UTF-8).
  const nlohmann::json& metadata() const { return metadata_; }
  // Every key -> its GGUF value type name ("UINT32", "ARRAY[STRING]", ...), for errors.
  const std::map<std::string, std::string>& metadata_types() const { return metadata_types_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }  // in file order
  const GgufTensor* find(std::string_view name) const;                 // nullptr if absent

  // Decodes rows [row_begin, row_end) x cols [col_begin, col_end) of `tensor` (one of this file's)
  // to float32 into `out`, row-major. Only the blocks holding those values are read. Returns the
  // bytes read. A range outside the tensor -> kOutOfRange.
  uint64_t read_f32(const GgufTensor& tensor, int64_t row_begin, int64_t row_end,
                    int64_t col_begin, int64_t col_end, float* out) const;
  // The same block of an F32 / F16 / BF16 `tensor` as stored (no conversion), row-major, into
  // `out`; another type -> kUnimplemented naming the tensor. Returns the bytes read.
  uint64_t read_stored(const GgufTensor& tensor, int64_t row_begin, int64_t row_end,
                       int64_t col_begin, int64_t col_end, void* out) const;
  // The packed blocks (Q8_0 / Q4_0 / Q4_1) of rows [row_begin, row_end) x cols [col_begin, col_end)
  // of `tensor`, unpacked one row at a time: sink(row, blocks, count). The column range must start
  // and end on block boundaries (kInvalidArgument naming the tensor); only those blocks are read.
  // Returns the bytes read.
  uint64_t read_packed(const GgufTensor& tensor, int64_t row_begin, int64_t row_end,
                       int64_t col_begin, int64_t col_end,
                       const std::function<void(int64_t, const PackedBlock*, int64_t)>& sink) const;

 private:
  GgufFile() = default;
  void check_block(const GgufTensor& tensor, int64_t row_begin, int64_t row_end,
                   int64_t col_begin, int64_t col_end) const;
  friend class GgufParser;

  std::filesystem::path path_;
  FileMapping mapping_;
  const std::byte* data_ = nullptr;  // the data section
  uint64_t data_size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  nlohmann::json metadata_ = nlohmann::json::object();
  std::map<std::string, std::string> metadata_types_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
};

}  // namespace tpserve::runtime
