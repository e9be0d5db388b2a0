#include "runtime/formats/safetensors.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "common/check.h"
#include "common/error.h"
#include "common/json_brief.h"
#include "runtime/formats/gguf.h"
#include "runtime/formats/mapped_file.h"

namespace tpserve::runtime {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The file starts with an 8-byte little-endian u64: the length N of the JSON header.
constexpr uint64_t kLengthPrefixBytes = 8;
// The reference crate refuses headers above MAX_HEADER_SIZE = 100,000,000 bytes.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr std::string_view kMetadataKey = "__metadata__";
constexpr std::string_view kSingleFile = "model.safetensors";
constexpr std::string_view kIndexFile = "model.safetensors.index.json";

std::string brief(const json& value) { return json_brief(value); }

// A JSON parser's message, kept to printable ASCII: it may quote the offending (non-UTF-8) bytes.
std::string printable(std::string_view text) {
  std::string clean(text);
  for (char& c : clean) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  }
  return clean;
}

// A non-negative JSON integer. nlohmann stores non-negative integers as number_unsigned, so a
// number_integer is negative and a float (2.0, 1e3) is not an integer at all.
std::optional<uint64_t> as_unsigned(const json& value) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  return std::nullopt;
}

uint64_t read_u64_le(const std::byte* bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | std::to_integer<uint64_t>(bytes[i]);
  return value;
}

// Bounds the header like the reference: at most kMaxHeaderBytes and inside the file.
uint64_t header_length(const std::string& file, const FileMapping& mapping) {
  const uint64_t length = read_u64_le(mapping.data);
  if (length > kMaxHeaderBytes) {
    raise(ErrorCode::kDataLoss, "{}: header length {} exceeds the {}-byte limit", file, length,
          kMaxHeaderBytes);
  }
  if (length > mapping.size - kLengthPrefixBytes) {
    raise(ErrorCode::kDataLoss, "{}: header length {} runs past the end of the {}-byte file", file,
          length, mapping.size);
  }
  return length;
}

// The header is UTF-8 JSON, possibly padded with trailing spaces (the reference writer pads to
// 8-byte alignment). Duplicate top-level keys are refused: JSON parsers silently keep one of them.
json parse_header_json(const std::string& file, std::string_view text) {
  std::set<std::string> seen;
  std::optional<std::string> duplicate;
  auto note_keys = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && !duplicate) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!seen.insert(key).second) duplicate = key;
    }
    return true;
  };
  json header;
  try {
    header = json::parse(text.begin(), text.end(), note_keys);
  } catch (const json::exception& error) {
    raise(ErrorCode::kDataLoss, "{}: header is not valid JSON: {}", file, printable(error.what()));
  }
  if (!header.is_object()) {
    raise(ErrorCode::kDataLoss, "{}: header is a JSON {}, expected an object", file,
          header.type_name());
  }
  if (duplicate) raise(ErrorCode::kDataLoss, "{}: header names '{}' twice", file, *duplicate);
  return header;
}

// "__metadata__" is an optional string -> string map.
std::map<std::string, std::string> parse_metadata(const std::string& file, const json& value) {
  std::map<std::string, std::string> metadata;
  if (value.is_null()) return metadata;
  if (!value.is_object()) {
    raise(ErrorCode::kDataLoss, "{}: '{}' is a JSON {}, expected an object of strings", file,
          kMetadataKey, value.type_name());
  }
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) {
      raise(ErrorCode::kDataLoss, "{}: '{}' field '{}' is a JSON {}, expected a string", file,
            kMetadataKey, key, item.type_name());
    }
    metadata.emplace(key, item.get<std::string>());
  }
  return metadata;
}

const json& required_field(const std::string& file, const std::string& name, const json& entry,
                           const char* field) {
  auto it = entry.find(field);
  if (it == entry.end()) {
    raise(ErrorCode::kDataLoss, "{}: tensor '{}': missing field '{}'", file, name, field);
  }
  return *it;
}

DType parse_dtype(const std::string& file, const std::string& name, const json& value) {
  if (!value.is_string()) {
    raise(ErrorCode::kDataLoss, "{}: tensor '{}': field 'dtype' is {}, expected a string", file,
          name, brief(value));
  }
  const auto& text = value.get_ref<const std::string&>();
  std::optional<DType> dtype = dtype_from_name(text);
  if (!dtype) {
    raise(ErrorCode::kUnimplemented, "{}: tensor '{}': unknown dtype '{}'", file, name, text);
  }
  return *dtype;
}

std::vector<int64_t> parse_shape(const std::string& file, const std::string& name,
                                 const json& value) {
  if (!value.is_array()) {
    raise(ErrorCode::kDataLoss, "{}: tensor '{}': field 'shape' is {}, expected an array", file,
          name, brief(value));
  }
  std::vector<int64_t> shape;
  for (const json& dim : value) {
    std::optional<uint64_t> size = as_unsigned(dim);
    if (!size || *size > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      raise(ErrorCode::kDataLoss,
            "{}: tensor '{}': field 'shape' {} has dimension {}; dimensions must be non-negative "
            "integers",
            file, name, brief(value), brief(dim));
    }
    shape.push_back(static_cast<int64_t>(*size));
  }
  return shape;
}

// "data_offsets": [begin, end], relative to the start of the data section, end >= begin.
std::pair<uint64_t, uint64_t> parse_offsets(const std::string& file, const std::string& name,
                                            const json& value) {
  std::optional<uint64_t> begin, end;
  if (value.is_array() && value.size() == 2) {
    begin = as_unsigned(value[0]);
    end = as_unsigned(value[1]);
  }
  if (!begin || !end) {
    raise(ErrorCode::kDataLoss,
          "{}: tensor '{}': field 'data_offsets' is {}, expected [begin, end] of non-negative "
          "integers",
          file, name, brief(value));
  }
  if (*end < *begin) {
    raise(ErrorCode::kDataLoss, "{}: tensor '{}': data_offsets [{}, {}) end before they begin",
          file, name, *begin, *end);
  }
  return {*begin, *end};
}

// The data range must hold exactly product(shape) x dtype size bytes (overflow-checked, as the
// reference does with checked_mul).
void check_byte_size(const std::string& file, const TensorEntry& entry) {
  uint64_t needed = static_cast<uint64_t>(dtype_size(entry.dtype));
  for (int64_t dim : entry.shape) {
    if (__builtin_mul_overflow(needed, static_cast<uint64_t>(dim), &needed)) {
      raise(ErrorCode::kDataLoss, "{}: tensor '{}': shape [{}] of {} overflows 64-bit byte size",
            file, entry.name, fmt::join(entry.shape, ", "), dtype_name(entry.dtype));
    }
  }
  // With a zero dimension the byte size is 0 whatever the others; rows x cols still multiplies them.
  uint64_t elements = 1;
  for (int64_t dim : entry.shape) {
    if (dim != 0 && (__builtin_mul_overflow(elements, static_cast<uint64_t>(dim), &elements) ||
                     elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))) {
      raise(ErrorCode::kDataLoss, "{}: tensor '{}': shape [{}] has more than 2^63 elements", file, entry.name,
            fmt::join(entry.shape, ", "));
    }
  }
  if (needed != entry.byte_size()) {
    raise(ErrorCode::kDataLoss,
          "{}: tensor '{}': data_offsets [{}, {}) hold {} bytes but shape [{}] of {} needs {}",
          file, entry.name, entry.data_begin, entry.data_end, entry.byte_size(),
          fmt::join(entry.shape, ", "), dtype_name(entry.dtype), needed);
  }
}

TensorEntry parse_tensor(const std::string& file, const std::string& name, const json& value) {
  if (!value.is_object()) {
    raise(ErrorCode::kDataLoss, "{}: tensor '{}': entry is a JSON {}, expected an object", file,
          name, value.type_name());
  }
  // The reference deserializes entries with deny_unknown_fields.
  for (const auto& [key, unused] : value.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      raise(ErrorCode::kDataLoss,
            "{}: tensor '{}': unknown field '{}' (expected dtype, shape, data_offsets)", file, name,
            key);
    }
  }
  TensorEntry entry;
  entry.name = name;
  entry.dtype = parse_dtype(file, name, required_field(file, name, value, "dtype"));
  entry.shape = parse_shape(file, name, required_field(file, name, value, "shape"));
  std::tie(entry.data_begin, entry.data_end) =
      parse_offsets(file, name, required_field(file, name, value, "data_offsets"));
  check_byte_size(file, entry);
  return entry;
}

// Sorted by offset, the tensors must tile the data section exactly: the first begins at 0, each
// begins where the previous ended, the last ends at the end of the file.
void check_layout(const std::string& file, const std::vector<TensorEntry>& tensors,
                  uint64_t data_size) {
  uint64_t expected_begin = 0;
  const TensorEntry* previous = nullptr;
  for (const TensorEntry& entry : tensors) {
    if (entry.data_begin < expected_begin) {
      raise(ErrorCode::kDataLoss,
            "{}: tensor '{}': data_offsets [{}, {}) overlap the previous tensor '{}' (ends at {})",
            file, entry.name, entry.data_begin, entry.data_end, previous->name, expected_begin);
    }
    if (entry.data_begin > expected_begin && previous == nullptr) {
      raise(ErrorCode::kDataLoss,
            "{}: tensor '{}': data_offsets [{}, {}) leave a gap: the first tensor must begin at 0",
            file, entry.name, entry.data_begin, entry.data_end);
    }
    if (entry.data_begin > expected_begin) {
      raise(ErrorCode::kDataLoss,
            "{}: tensor '{}': data_offsets [{}, {}) leave a gap of {} bytes after tensor '{}' "
            "(ends at {})",
            file, entry.name, entry.data_begin, entry.data_end, entry.data_begin - expected_begin,
            previous->name, expected_begin);
    }
    expected_begin = entry.data_end;
    previous = &entry;
  }
  const std::string last = previous ? fmt::format("tensor '{}'", previous->name) : "no tensor";
  if (expected_begin > data_size) {
    raise(ErrorCode::kDataLoss,
          "{}: data section is {} bytes but {} ends at {}: the file is truncated", file, data_size,
          last, expected_begin);
  }
  if (expected_begin < data_size) {
    raise(ErrorCode::kDataLoss, "{}: data section is {} bytes but {} ends at {}: {} trailing bytes",
          file, data_size, last, expected_begin, data_size - expected_begin);
  }
}

std::string read_text_file(const fs::path& path) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) raise(ErrorCode::kNotFound, "{}: cannot open for reading", path.string());
  std::ostringstream text;
  text << stream.rdbuf();
  return text.str();
}

// Shard names in weight_map must be plain file names inside the model directory.
void check_shard_name(const std::string& index, const std::string& tensor,
                      const std::string& file_name) {
  const bool plain = !file_name.empty() && file_name != "." && file_name != ".." &&
                     file_name.find_first_of(std::string_view("/\\\0", 3)) == std::string::npos;
  if (!plain) {
    raise(ErrorCode::kInvalidArgument,
          "{}: weight_map['{}'] names '{}', which is not a plain file name inside the model "
          "directory",
          index, tensor, file_name);
  }
}

}  // namespace

// ---- TensorEntry ----

int64_t TensorEntry::numel() const {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
}

int64_t TensorEntry::rows() const { return shape.empty() ? 1 : shape[0]; }

int64_t TensorEntry::cols() const {
  int64_t count = 1;
  for (size_t i = 1; i < shape.size(); ++i) count *= shape[i];
  return count;
}

// ---- SafetensorsFile ----

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const fs::path& path) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  const std::string name = path.string();
  const FileMapping mapping =
      map_file(path, kLengthPrefixBytes, "the 8-byte header length");
  file->map_ = mapping.data;  // owned from here: the destructor unmaps, also if validation throws
  file->map_size_ = mapping.size;

  const uint64_t length = header_length(name, mapping);
  const std::string_view text(reinterpret_cast<const char*>(mapping.data) + kLengthPrefixBytes,
                              length);
  const json header = parse_header_json(name, text);
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      file->metadata_ = parse_metadata(name, value);
    } else {
      file->tensors_.push_back(parse_tensor(name, key, value));
    }
  }
  std::sort(file->tensors_.begin(), file->tensors_.end(), [](const auto& a, const auto& b) {
    return std::tie(a.data_begin, a.data_end) < std::tie(b.data_begin, b.data_end);
  });
  const uint64_t data_offset = kLengthPrefixBytes + length;
  check_layout(name, file->tensors_, mapping.size - data_offset);
  file->data_ = mapping.data + data_offset;
  for (size_t i = 0; i < file->tensors_.size(); ++i)
    file->index_.emplace(file->tensors_[i].name, i);
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  unmap_file({map_, map_size_});
}

const TensorEntry* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const std::byte> SafetensorsFile::bytes(const TensorEntry& tensor, uint64_t offset,
                                                  uint64_t length) const {
  TPS_CHECK(&tensor >= tensors_.data() && &tensor < tensors_.data() + tensors_.size(),
            "{}: tensor '{}' is not an entry of this file", path_.string(), tensor.name);
  const uint64_t size = tensor.byte_size();
  if (offset > size || length > size - offset) {
    raise(ErrorCode::kOutOfRange,
          "{}: tensor '{}': {} bytes at offset {} lie outside its {} bytes of data", path_.string(),
          tensor.name, length, offset, size);
  }
  return {data_ + tensor.data_begin + offset, static_cast<size_t>(length)};
}

// ---- Checkpoint ----

std::unique_ptr<Checkpoint> Checkpoint::open(const fs::path& dir) {
  std::error_code error;
  if (!fs::is_directory(dir, error)) {
    raise(ErrorCode::kNotFound, "{}: not a directory (expected a model directory with {} or {})",
          dir.string(), kSingleFile, kIndexFile);
  }
  std::unique_ptr<Checkpoint> checkpoint(new Checkpoint());
  checkpoint->dir_ = dir;
  const fs::path single = dir / kSingleFile;
  const fs::path index = dir / kIndexFile;
  if (fs::exists(single, error)) {
    checkpoint->files_.push_back(SafetensorsFile::open(single));
    const SafetensorsFile* file = checkpoint->files_.back().get();
    for (const TensorEntry& entry : file->tensors()) {
      checkpoint->tensors_.emplace(entry.name, Located{file, &entry});
    }
  } else if (fs::exists(index, error)) {
    checkpoint->open_index(index);
  } else {
    raise(ErrorCode::kNotFound, "{}: neither {} nor {} found", dir.string(), kSingleFile,
          kIndexFile);
  }
  return checkpoint;
}

// {"metadata": {...}, "weight_map": {tensor: shard file}}. Each shard is opened once; tensors a
// shard holds but the map does not list are ignored.
void Checkpoint::open_index(const fs::path& index_path) {
  const std::string index = index_path.string();
  // Like the header's top-level keys, a tensor named twice in weight_map is refused: the parser
  // would silently keep one of the two files.
  std::string section;
  std::set<std::string> mapped;
  std::optional<std::string> duplicate;
  auto note_keys = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1) section = parsed.get<std::string>();
    if (event == json::parse_event_t::key && depth == 2 && section == "weight_map" && !duplicate &&
        !mapped.insert(parsed.get<std::string>()).second) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json root;
  try {
    const std::string text = read_text_file(index_path);
    root = json::parse(text.begin(), text.end(), note_keys);
  } catch (const json::exception& error) {
    raise(ErrorCode::kDataLoss, "{}: not valid JSON: {}", index, printable(error.what()));
  }
  if (duplicate) raise(ErrorCode::kDataLoss, "{}: weight_map names '{}' twice", index, *duplicate);
  if (!root.is_object()) {
    raise(ErrorCode::kDataLoss, "{}: is a JSON {}, expected an object", index, root.type_name());
  }
  auto weight_map = root.find("weight_map");
  if (weight_map == root.end()) raise(ErrorCode::kDataLoss, "{}: missing 'weight_map'", index);
  if (!weight_map->is_object()) {
    raise(ErrorCode::kDataLoss, "{}: 'weight_map' is a JSON {}, expected an object", index,
          weight_map->type_name());
  }
  std::map<std::string, const SafetensorsFile*> shards;
  for (const auto& [tensor, value] : weight_map->items()) {
    if (!value.is_string()) {
      raise(ErrorCode::kDataLoss, "{}: weight_map['{}'] is {}, expected a file name", index, tensor,
            brief(value));
    }
    const auto& file_name = value.get_ref<const std::string&>();
    check_shard_name(index, tensor, file_name);
    auto shard = shards.find(file_name);
    if (shard == shards.end()) {
      const fs::path shard_path = dir_ / file_name;
      std::error_code error;
      if (!fs::exists(shard_path, error)) {
        raise(ErrorCode::kNotFound, "{}: weight_map['{}'] names '{}', which does not exist", index,
              tensor, file_name);
      }
      files_.push_back(SafetensorsFile::open(shard_path));
      shard = shards.emplace(file_name, files_.back().get()).first;
    }
    const TensorEntry* entry = shard->second->find(tensor);
    if (entry == nullptr) {
      raise(ErrorCode::kNotFound, "{}: weight_map['{}'] names '{}', which has no tensor '{}'",
            index, tensor, file_name, tensor);
    }
    tensors_.emplace(tensor, Located{shard->second, entry});
  }
}

const Checkpoint::Located& Checkpoint::locate(std::string_view name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    raise(ErrorCode::kNotFound, "{}: tensor '{}' not found in the checkpoint", dir_.string(), name);
  }
  return it->second;
}

bool Checkpoint::contains(std::string_view name) const {
  return tensors_.find(name) != tensors_.end();
}

const TensorEntry& Checkpoint::tensor(std::string_view name) const { return *locate(name).entry; }

const SafetensorsFile& Checkpoint::file_of(std::string_view name) const {
  const Located& located = locate(name);
  if (located.file == nullptr) {
    raise(ErrorCode::kInvalidArgument, "{}: tensor '{}' is not in a safetensors file", dir_.string(),
          name);
  }
  return *located.file;
}

const SafetensorsFile* Checkpoint::safetensors_of(std::string_view name) const {
  return locate(name).file;
}

const fs::path& Checkpoint::path_of(std::string_view name) const {
  const Located& located = locate(name);
  return located.file == nullptr ? dir_ : located.file->path();
}

std::vector<std::string> Checkpoint::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, unused] : tensors_) names.push_back(name);
  return names;
}

void Checkpoint::read_block(std::string_view name, int64_t row_begin, int64_t row_end,
                            int64_t col_begin, int64_t col_end,
                            const std::function<void(const std::byte*, int64_t)>& sink) const {
  const Located& located = locate(name);
  if (located.gguf != nullptr) {
    raise(ErrorCode::kUnimplemented, "{}: tensor '{}' is in a GGUF file: only read_f32 decodes it",
          path_of(name).string(), name);
  }
  const TensorEntry& entry = *located.entry;
  const int64_t rows = entry.rows();
  const int64_t cols = entry.cols();
  if (row_begin < 0 || row_begin > row_end || row_end > rows || col_begin < 0 ||
      col_begin > col_end || col_end > cols) {
    raise(ErrorCode::kOutOfRange,
          "{}: tensor '{}': block rows [{}, {}) x cols [{}, {}) is outside its {} x {} matrix",
          located.file->path().string(), name, row_begin, row_end, col_begin, col_end, rows, cols);
  }
  const auto element = static_cast<uint64_t>(dtype_size(entry.dtype));
  const int64_t width = col_end - col_begin;
  if (width == cols) {
    // Whole rows are contiguous in row-major storage: one read.
    const int64_t count = (row_end - row_begin) * cols;
    auto bytes = located.file->bytes(entry, static_cast<uint64_t>(row_begin * cols) * element,
                                     static_cast<uint64_t>(count) * element);
    sink(bytes.data(), count);
    bytes_read_.fetch_add(bytes.size(), std::memory_order_relaxed);
    return;
  }
  for (int64_t row = row_begin; row < row_end; ++row) {
    auto bytes = located.file->bytes(entry, static_cast<uint64_t>(row * cols + col_begin) * element,
                                     static_cast<uint64_t>(width) * element);
    sink(bytes.data(), width);
    bytes_read_.fetch_add(bytes.size(), std::memory_order_relaxed);
  }
}

void Checkpoint::read_f32(std::string_view name, int64_t row_begin, int64_t row_end,
                          int64_t col_begin, int64_t col_end, float* out) const {
  const Located& located = locate(name);
  if (located.gguf != nullptr) {
    read_gguf(located, name, row_begin, row_end, col_begin, col_end, sizeof(float),
              reinterpret_cast<std::byte*>(out),
              [&](const GgufTensor& t, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                  std::byte* to) {
                return gguf_->read_f32(t, r0, r1, c0, c1, reinterpret_cast<float*>(to));
              });
    return;
  }
  const TensorEntry& entry = *located.entry;
  if (!is_weight_dtype(entry.dtype)) {
    raise(ErrorCode::kUnimplemented, "{}: tensor '{}' is {}; read_f32 reads F32, F16 or BF16",
          located.file->path().string(), name, dtype_name(entry.dtype));
  }
  read_block(name, row_begin, row_end, col_begin, col_end,
             [&](const std::byte* bytes, int64_t count) {
               convert_to_f32(entry.dtype, bytes, out, count);
               out += count;
             });
}

std::optional<DType> Checkpoint::stored_float_dtype(std::string_view name) const {
  const Located& located = locate(name);
  if (located.gguf != nullptr) return ggml_float_dtype(located.gguf->type);
  if (is_weight_dtype(located.entry->dtype)) return located.entry->dtype;
  return std::nullopt;
}

void Checkpoint::read_stored(std::string_view name, int64_t row_begin, int64_t row_end,
                             int64_t col_begin, int64_t col_end, void* out) const {
  const std::optional<DType> dtype = stored_float_dtype(name);
  if (!dtype) {
    raise(ErrorCode::kUnimplemented, "{}: tensor '{}' is not stored as F32, F16 or BF16",
          path_of(name).string(), name);
  }
  const Located& located = locate(name);
  auto* to = static_cast<std::byte*>(out);
  if (located.gguf != nullptr) {
    read_gguf(located, name, row_begin, row_end, col_begin, col_end,
              static_cast<size_t>(dtype_size(*dtype)), to,
              [&](const GgufTensor& t, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                  std::byte* into) { return gguf_->read_stored(t, r0, r1, c0, c1, into); });
    return;
  }
  const auto element = static_cast<size_t>(dtype_size(*dtype));
  read_block(name, row_begin, row_end, col_begin, col_end,
             [&](const std::byte* bytes, int64_t count) {
               std::memcpy(to, bytes, static_cast<size_t>(count) * element);
               to += static_cast<size_t>(count) * element;
             });
}

void Checkpoint::read_i32(std::string_view name, int64_t row_begin, int64_t row_end,
                          int64_t col_begin, int64_t col_end, int32_t* out) const {
  const TensorEntry& entry = tensor(name);
  if (entry.dtype != DType::kI32) {
    raise(ErrorCode::kUnimplemented, "{}: tensor '{}' is {}; read_i32 reads I32",
          path_of(name).string(), name, dtype_name(entry.dtype));
  }
  read_block(name, row_begin, row_end, col_begin, col_end,
             [&](const std::byte* bytes, int64_t count) {
               std::memcpy(out, bytes, static_cast<size_t>(count) * sizeof(int32_t));
               out += count;
             });
}

}  // namespace tpserve::runtime
