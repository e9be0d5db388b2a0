// Reading Hugging Face checkpoints: safetensors files (mmap'ed, validated at open like the
// reference Rust `safetensors` crate) and model directories with an optional
// `model.safetensors.index.json`. A rank reads only the byte ranges of its own shard: read_f32
// touches just the rows / column segments it is asked for.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/dtype.h"
#include "runtime/formats/ggml_blocks.h"

namespace tpserve::runtime {

class GgufFile;
struct GgufTensor;

struct TensorEntry {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t data_begin = 0;  // offsets inside the data section
  uint64_t data_end = 0;

  int64_t numel() const;
  uint64_t byte_size() const { return data_end - data_begin; }
  // The tensor viewed as a matrix: rows = shape[0], cols = product of the rest;
  // 1-D [n] -> [n, 1]; scalar -> [1, 1].
  int64_t rows() const;
  int64_t cols() const;
};

// One safetensors file, mmap'ed read-only (MAP_PRIVATE) and validated at open.
class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::filesystem::path& path);
  ~SafetensorsFile();  // munmap (the descriptor is closed right after mmap)
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::vector<TensorEntry>& tensors() const { return tensors_; }  // in data-offset order
  const TensorEntry* find(std::string_view name) const;                 // nullptr if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Where the data section starts in the file (tensor data_begin is relative to it), and the
  // file's size when it was opened: what a reader with its own descriptor needs.
  uint64_t data_offset() const { return static_cast<uint64_t>(data_ - map_); }
  uint64_t file_size() const { return map_size_; }

  // The bytes [offset, offset + length) of a tensor's data, bounds-checked (throws kOutOfRange).
  // `tensor` must be one of this file's entries.
  std::span<const std::byte> bytes(const TensorEntry& tensor, uint64_t offset,
                                   uint64_t length) const;

 private:
  SafetensorsFile() = default;

  std::filesystem::path path_;
  const std::byte* map_ = nullptr;  // the whole file
  size_t map_size_ = 0;
  const std::byte* data_ = nullptr;  // start of the data section inside map_
  std::vector<TensorEntry> tensors_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

// How a GGUF tensor appears in a Checkpoint: under the name the family adapter asks for, its rows
// optionally reordered (row i of the view is row row_order[i] of the file's tensor).
struct GgufView {
  std::string name;
  std::string gguf_name;
  std::vector<int64_t> row_order;  // empty: the file's order
};

// A model directory: `model.safetensors`, or `model.safetensors.index.json`
// ({"metadata": ..., "weight_map": {tensor: file}}) naming several shard files. Like transformers,
// a single `model.safetensors` wins when both are present. Or one GGUF file (open_gguf), whose
// tensors are decoded to float32 as they are read.
class Checkpoint {
 public:
  static std::unique_ptr<Checkpoint> open(const std::filesystem::path& dir);
  // The tensors of `file`: those `views` name under their view names (shape [rows, cols] or [n],
  // dtype F32: what read_f32 delivers), every other one under its own GGUF name, so that the
  // tensor accounting sees it. A view naming a tensor the file lacks, a row_order that is not a
  // permutation of the tensor's rows, or two views of one name -> kInvalidArgument naming the file.
  static std::unique_ptr<Checkpoint> open_gguf(std::unique_ptr<GgufFile> file,
                                               std::vector<GgufView> views);
  ~Checkpoint();

  const std::filesystem::path& dir() const { return dir_; }
  bool contains(std::string_view name) const;
  // Both throw kNotFound: "<dir>: tensor 'x' not found in the checkpoint".
  const TensorEntry& tensor(std::string_view name) const;
  const SafetensorsFile& file_of(std::string_view name) const;
  std::vector<std::string> tensor_names() const;  // sorted
  // The file holding tensor `name` (a safetensors shard or the GGUF file), for error messages.
  const std::filesystem::path& path_of(std::string_view name) const;

  // Reads the block rows [row_begin, row_end) x cols [col_begin, col_end) of tensor `name` viewed
  // as a matrix (TensorEntry::rows/cols) into `out` (row-major, (row_end - row_begin) *
  // (col_end - col_begin) floats), widening F32/F16/BF16 to float32. Touches only those bytes of
  // the mapping: a full-width row range is one contiguous read, a column block one segment per row.
  // Other dtypes -> kUnimplemented; a range outside the tensor -> kOutOfRange.
  void read_f32(std::string_view name, int64_t row_begin, int64_t row_end, int64_t col_begin,
                int64_t col_end, float* out) const;
  // The same block of an I32 tensor (GPTQ / AWQ packed codes, g_idx), copied as stored
  // (little-endian, as safetensors writes). Other dtypes -> kUnimplemented.
  void read_i32(std::string_view name, int64_t row_begin, int64_t row_end, int64_t col_begin,
                int64_t col_end, int32_t* out) const;
  // The dtype tensor `name`'s values are stored in when they can be copied as they are: F32, F16
  // or BF16, in a safetensors or a GGUF file; nullopt for anything else (I32, GGUF block types).
  std::optional<DType> stored_float_dtype(std::string_view name) const;
  // The block of read_f32 as stored (stored_float_dtype(name) values, a GGUF view's row order
  // applied), for a backend to convert itself (Backend::upload). Other dtypes -> kUnimplemented.
  void read_stored(std::string_view name, int64_t row_begin, int64_t row_end, int64_t col_begin,
                   int64_t col_end, void* out) const;
  // GGUF files: the ggml type tensor `name` is stored in; nullopt for a safetensors tensor.
  std::optional<GgmlType> gguf_type(std::string_view name) const;
  // GGUF packed tensors (Q8_0 / Q4_0 / Q4_1, ggml_packed_bits > 0): rows [row_begin, row_end) in
  // the view's row order x cols [col_begin, col_end) on block boundaries, unpacked:
  // sink(row - row_begin, blocks, count). Touches only those blocks' bytes.
  void read_packed(std::string_view name, int64_t row_begin, int64_t row_end, int64_t col_begin,
                   int64_t col_end,
                   const std::function<void(int64_t, const PackedBlock*, int64_t)>& sink) const;
  // The safetensors file holding tensor `name`, or nullptr for a GGUF tensor (kNotFound when the
  // checkpoint has no such tensor).
  const SafetensorsFile* safetensors_of(std::string_view name) const;
  // Total bytes read through read_f32 / read_i32 so far, plus those readers with their own
  // descriptors report through count_bytes_read (runtime/model/shard_loader.h), for
  // load-throughput reports.
  uint64_t bytes_read() const { return bytes_read_.load(std::memory_order_relaxed); }
  void count_bytes_read(uint64_t bytes) const {
    bytes_read_.fetch_add(bytes, std::memory_order_relaxed);
  }

 private:
  struct Located {
    const SafetensorsFile* file;  // null for a GGUF tensor
    const TensorEntry* entry;
    const GgufTensor* gguf = nullptr;
    const std::vector<int64_t>* row_order = nullptr;  // GGUF views only; empty = file order
  };

  Checkpoint() = default;
  void open_index(const std::filesystem::path& index_path);
  const Located& locate(std::string_view name) const;
  // Bounds-checks the block, then hands its bytes to sink one contiguous run at a time
  // (bytes, element count).
  void read_block(std::string_view name, int64_t row_begin, int64_t row_end, int64_t col_begin,
                  int64_t col_end, const std::function<void(const std::byte*, int64_t)>& sink) const;
  // A GGUF tensor's block, `value_bytes` per value in `out`: read(tensor, rows, cols, out) for
  // each run of the file's rows (a view's row order applied; a vector is one row of n).
  using GgufRead = std::function<uint64_t(const GgufTensor&, int64_t, int64_t, int64_t, int64_t,
                                          std::byte*)>;
  void read_gguf(const Located& located, std::string_view name, int64_t row_begin, int64_t row_end,
                 int64_t col_begin, int64_t col_end, size_t value_bytes, std::byte* out,
                 const GgufRead& read) const;

  std::filesystem::path dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Located, std::less<>> tensors_;
  std::unique_ptr<GgufFile> gguf_;
  std::vector<std::unique_ptr<TensorEntry>> gguf_entries_;
  std::vector<std::unique_ptr<std::vector<int64_t>>> row_orders_;
  mutable std::atomic<uint64_t> bytes_read_{0};
};

}  // namespace tpserve::runtime
