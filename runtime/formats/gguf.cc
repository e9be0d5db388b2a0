#include "runtime/formats/gguf.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>

#include "common/check.h"
#include "common/error.h"

namespace tpserve::runtime {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};
constexpr uint64_t kHeaderBytes = 4 + 4 + 8 + 8;
constexpr uint32_t kMaxDims = 4;  // GGML_MAX_DIMS
constexpr uint64_t kDefaultAlignment = 32;

// gguf_type (gguf.h).
enum ValueType : uint32_t {
  kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5, kFloat32 = 6,
  kBool = 7, kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11, kFloat64 = 12,
};

const char* value_type_name(uint32_t type) {
  static constexpr const char* kNames[] = {"UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32",
                                           "FLOAT32", "BOOL", "STRING", "ARRAY", "UINT64", "INT64",
                                           "FLOAT64"};
  return type < std::size(kNames) ? kNames[type] : "unknown";
}

// Fixed size of a scalar value type; 0 for string and array.
uint64_t scalar_bytes(uint32_t type) {
  switch (type) {
    case kUint8: case kInt8: case kBool: return 1;
    case kUint16: case kInt16: return 2;
    case kUint32: case kInt32: case kFloat32: return 4;
    case kUint64: case kInt64: case kFloat64: return 8;
    default: return 0;
  }
}

// A name or key for an error line: printable ASCII, at most 80 characters.
std::string printable(std::string_view text) {
  std::string clean(text.substr(0, 80));
  for (char& c : clean) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  }
  if (text.size() > 80) clean += "...";
  return clean;
}

}  // namespace

// Reads the header front to back; `field` names what is being read for the error lines.
class GgufParser {
 public:
  GgufParser(GgufFile& file) : file_(file), name_(file.path_.string()) {}

  void parse() {
    const std::byte* bytes = file_.mapping_.data;
    if (std::memcmp(bytes, kMagic, 4) != 0) {
      raise(ErrorCode::kDataLoss, "{}: not a GGUF file (magic is not \"GGUF\")", name_);
    }
    position_ = 4;
    file_.version_ = u32("version");
    if (file_.version_ != 2 && file_.version_ != 3) {
      raise(ErrorCode::kUnimplemented,
            "{}: GGUF version {} (tpserve reads little-endian versions 2 and 3)", name_,
            file_.version_);
    }
    const uint64_t tensor_count = u64("tensor_count");
    const uint64_t kv_count = u64("metadata_kv_count");
    // Each key-value pair takes at least 8 + 4 + 1 bytes, each tensor info 8 + 4 + 8 + 4 + 8.
    if (kv_count > remaining() / 13) {
      raise(ErrorCode::kDataLoss, "{}: metadata_kv_count {} cannot fit in the {}-byte file", name_,
            kv_count, size());
    }
    for (uint64_t i = 0; i < kv_count; ++i) read_key_value(i);
    if (tensor_count > remaining() / 32) {
      raise(ErrorCode::kDataLoss, "{}: tensor_count {} cannot fit in the {}-byte file", name_,
            tensor_count, size());
    }
    read_alignment();
    for (uint64_t i = 0; i < tensor_count; ++i) read_tensor_info(i);
    place_data_section();
  }

 private:
  uint64_t size() const { return file_.mapping_.size; }
  uint64_t remaining() const { return size() - position_; }

  const std::byte* take(uint64_t length, const std::string& field) {
    if (length > remaining()) {
      raise(ErrorCode::kDataLoss, "{}: {} ({} bytes at offset {}) runs past the end of the {}-byte "
            "file", name_, field, length, position_, size());
    }
    const std::byte* at = file_.mapping_.data + position_;
    position_ += length;
    return at;
  }
  template <typename T>
  T scalar(const std::string& field) {
    T value;
    std::memcpy(&value, take(sizeof(T), field), sizeof(T));
    return value;
  }
  uint32_t u32(const std::string& field) { return scalar<uint32_t>(field); }
  uint64_t u64(const std::string& field) { return scalar<uint64_t>(field); }

  std::string string(const std::string& field) {
    const uint64_t length = u64(field + " length");
    const std::byte* at = take(length, field);
    return std::string(reinterpret_cast<const char*>(at), static_cast<size_t>(length));
  }

  json scalar_value(uint32_t type, const std::string& field) {
    switch (type) {
      case kUint8: return scalar<uint8_t>(field);
      case kInt8: return scalar<int8_t>(field);
      case kUint16: return scalar<uint16_t>(field);
      case kInt16: return scalar<int16_t>(field);
      case kUint32: return scalar<uint32_t>(field);
      case kInt32: return scalar<int32_t>(field);
      case kUint64: return scalar<uint64_t>(field);
      case kInt64: return scalar<int64_t>(field);
      case kFloat32: return scalar<float>(field);
      case kFloat64: return scalar<double>(field);
      case kBool: {
        const auto byte = scalar<uint8_t>(field);
        if (byte > 1) {
          raise(ErrorCode::kDataLoss, "{}: {} is a BOOL holding {}, expected 0 or 1", name_, field,
                byte);
        }
        return byte == 1;
      }
      case kString: return string(field);
      default:
        raise(ErrorCode::kDataLoss, "{}: {} has value type {}, which GGUF does not define", name_,
              field, type);
    }
  }

  void read_key_value(uint64_t index) {
    std::string key = string(fmt::format("metadata key {}", index));
    const std::string field = fmt::format("metadata '{}'", printable(key));
    if (key.empty()) raise(ErrorCode::kDataLoss, "{}: metadata key {} is empty", name_, index);
    if (file_.metadata_.contains(key)) {
      raise(ErrorCode::kDataLoss, "{}: {} appears twice", name_, field);
    }
    const uint32_t type = u32(field + " type");
    json value;
    std::string type_name = value_type_name(type);
    if (type == kArray) {
      const uint32_t element = u32(field + " element type");
      if (element == kArray) {
        raise(ErrorCode::kUnimplemented, "{}: {} is an array of arrays, which tpserve does not "
              "read", name_, field);
      }
      const uint64_t count = u64(field + " count");
      // A string element takes at least its 8-byte length.
      const uint64_t least = element == kString ? 8 : scalar_bytes(element);
      if (least == 0) {
        raise(ErrorCode::kDataLoss, "{}: {} has element type {}, which GGUF does not define",
              name_, field, element);
      }
      if (count > remaining() / least) {
        raise(ErrorCode::kDataLoss, "{}: {} has {} elements, more than the {} bytes left can hold",
              name_, field, count, remaining());
      }
      value = json::array();
      value.get_ref<json::array_t&>().reserve(static_cast<size_t>(count));
      for (uint64_t i = 0; i < count; ++i) value.push_back(scalar_value(element, field));
      type_name = fmt::format("ARRAY[{}]", value_type_name(element));
    } else {
      value = scalar_value(type, field);
    }
    file_.metadata_types_.emplace(key, type_name);
    file_.metadata_.emplace(std::move(key), std::move(value));
  }

  // general.alignment: a UINT32 power of two (gguf.cpp refuses anything else).
  void read_alignment() {
    auto it = file_.metadata_.find("general.alignment");
    if (it == file_.metadata_.end()) return;
    const uint64_t alignment = it->is_number_unsigned() ? it->get<uint64_t>() : 0;
    if (file_.metadata_types_.at("general.alignment") != "UINT32" || alignment == 0 ||
        (alignment & (alignment - 1)) != 0) {
      raise(ErrorCode::kDataLoss, "{}: metadata 'general.alignment' is {} {}, expected a UINT32 "
            "power of two", name_, file_.metadata_types_.at("general.alignment"), it->dump());
    }
    file_.alignment_ = alignment;
  }

  void read_tensor_info(uint64_t index) {
    GgufTensor tensor;
    tensor.name = string(fmt::format("tensor {} name", index));
    const std::string field = fmt::format("tensor '{}'", printable(tensor.name));
    if (tensor.name.empty()) raise(ErrorCode::kDataLoss, "{}: tensor {} has an empty name", name_, index);
    if (file_.index_.contains(tensor.name)) {
      raise(ErrorCode::kDataLoss, "{}: {} appears twice", name_, field);
    }
    const uint32_t n_dims = u32(field + " n_dims");
    if (n_dims == 0 || n_dims > kMaxDims) {
      raise(ErrorCode::kDataLoss, "{}: {} has {} dimensions, expected 1 to {}", name_, field,
            n_dims, kMaxDims);
    }
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = u64(fmt::format("{} ne[{}]", field, d));
      if (dim == 0 || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / numel) {
        raise(ErrorCode::kDataLoss, "{}: {} ne[{}] is {}: a dimension must be positive and the "
              "element count within int64", name_, field, d, dim);
      }
      numel *= static_cast<int64_t>(dim);
      tensor.dims.push_back(static_cast<int64_t>(dim));
    }
    const uint32_t type = u32(field + " type");
    const std::optional<GgmlTypeTraits> traits = ggml_type_traits(type);
    if (!traits) {
      raise(ErrorCode::kUnimplemented, "{}: {} has ggml type {} ({}); tpserve reads F32, F16, BF16, "
            "Q8_0, Q4_0, Q4_1, Q4_K, Q5_K and Q6_K", name_, field, ggml_type_name(type), type);
    }
    tensor.type = static_cast<GgmlType>(type);
    if (tensor.dims[0] % traits->block_values != 0) {
      raise(ErrorCode::kDataLoss, "{}: {} rows are {} values, not a whole number of {} blocks of {}",
            name_, field, tensor.dims[0], traits->name, traits->block_values);
    }
    // numel fits int64, but its bytes (up to 4 per value) need not fit uint64: check, or a huge
    // F32 tensor's size wraps round to a few bytes that the data section holds.
    const auto blocks = static_cast<uint64_t>(numel / traits->block_values);
    const auto block_bytes = static_cast<uint64_t>(traits->block_bytes);
    if (blocks > std::numeric_limits<uint64_t>::max() / block_bytes) {
      raise(ErrorCode::kDataLoss, "{}: {} has {} {} values: its byte size overflows 64 bits", name_,
            field, numel, traits->name);
    }
    tensor.bytes = blocks * block_bytes;
    tensor.offset = u64(field + " offset");
    if (tensor.offset % file_.alignment_ != 0) {
      raise(ErrorCode::kDataLoss, "{}: {} offset {} is not a multiple of the alignment {}", name_,
            field, tensor.offset, file_.alignment_);
    }
    file_.index_.emplace(tensor.name, file_.tensors_.size());
    file_.tensors_.push_back(std::move(tensor));
  }

  // The data section starts at the first multiple of the alignment after the tensor infos; every
  // tensor must lie inside it.
  void place_data_section() {
    const uint64_t alignment = file_.alignment_;
    const uint64_t padding = (alignment - position_ % alignment) % alignment;
    if (padding > remaining()) {
      if (!file_.tensors_.empty()) {
        raise(ErrorCode::kDataLoss, "{}: the file ends inside the padding before the data section",
              name_);
      }
      position_ = size();
    } else {
      position_ += padding;
    }
    file_.data_ = file_.mapping_.data + position_;
    file_.data_size_ = remaining();
    for (const GgufTensor& tensor : file_.tensors_) {
      if (tensor.offset > file_.data_size_ || tensor.bytes > file_.data_size_ - tensor.offset) {
        raise(ErrorCode::kDataLoss, "{}: tensor '{}' ({} bytes at data offset {}) runs past the end "
              "of the {}-byte data section", name_, printable(tensor.name), tensor.bytes,
              tensor.offset, file_.data_size_);
      }
    }
  }

  GgufFile& file_;
  std::string name_;
  uint64_t position_ = 0;
};

int64_t GgufTensor::rows() const {
  int64_t rows = 1;
  for (size_t i = 1; i < dims.size(); ++i) rows *= dims[i];
  return rows;
}

std::vector<int64_t> GgufTensor::shape() const { return {dims.rbegin(), dims.rend()}; }

uint64_t GgufTensor::row_bytes() const {
  const GgmlTypeTraits traits = *ggml_type_traits(static_cast<uint32_t>(type));
  return static_cast<uint64_t>(dims[0] / traits.block_values * traits.block_bytes);
}

std::unique_ptr<GgufFile> GgufFile::open(const fs::path& path) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->path_ = path;
  file->mapping_ = map_file(path, kHeaderBytes, "the 24-byte GGUF header");
  GgufParser(*file).parse();
  return file;
}

GgufFile::~GgufFile() { unmap_file(mapping_); }

bool GgufFile::looks_like_gguf(const fs::path& path) {
  std::ifstream stream(path, std::ios::binary);
  char magic[4] = {};
  return stream.read(magic, 4) && std::memcmp(magic, kMagic, 4) == 0;
}

const GgufTensor* GgufFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void GgufFile::check_block(const GgufTensor& tensor, int64_t row_begin, int64_t row_end,
                           int64_t col_begin, int64_t col_end) const {
  TPS_CHECK(&tensor >= tensors_.data() && &tensor < tensors_.data() + tensors_.size(),
            "{}: tensor '{}' is not an entry of this file", path_.string(), tensor.name);
  if (row_begin < 0 || row_begin > row_end || row_end > tensor.rows() || col_begin < 0 ||
      col_begin > col_end || col_end > tensor.cols()) {
    raise(ErrorCode::kOutOfRange,
          "{}: tensor '{}': block rows [{}, {}) x cols [{}, {}) is outside its {} x {} matrix",
          path_.string(), tensor.name, row_begin, row_end, col_begin, col_end, tensor.rows(),
          tensor.cols());
  }
}

uint64_t GgufFile::read_packed(
    const GgufTensor& tensor, int64_t row_begin, int64_t row_end, int64_t col_begin,
    int64_t col_end, const std::function<void(int64_t, const PackedBlock*, int64_t)>& sink) const {
  check_block(tensor, row_begin, row_end, col_begin, col_end);
  if (ggml_packed_bits(tensor.type) == 0) {
    raise(ErrorCode::kInvalidArgument, "{}: tensor '{}' is {}, not a packed type (Q8_0, Q4_0, Q4_1)",
          path_.string(), tensor.name, ggml_type_name(static_cast<uint32_t>(tensor.type)));
  }
  const GgmlTypeTraits traits = *ggml_type_traits(static_cast<uint32_t>(tensor.type));
  if (col_begin % traits.block_values != 0 || col_end % traits.block_values != 0) {
    raise(ErrorCode::kInvalidArgument, "{}: tensor '{}': cols [{}, {}) cut a block of {} values",
          path_.string(), tensor.name, col_begin, col_end, traits.block_values);
  }
  const int64_t first_block = col_begin / traits.block_values;
  const int64_t blocks = (col_end - col_begin) / traits.block_values;
  const uint64_t row_bytes = tensor.row_bytes();
  std::vector<PackedBlock> unpacked(static_cast<size_t>(blocks));
  for (int64_t row = row_begin; row < row_end; ++row) {
    const std::byte* src = data_ + tensor.offset + static_cast<uint64_t>(row) * row_bytes +
                           static_cast<uint64_t>(first_block * traits.block_bytes);
    for (int64_t b = 0; b < blocks; ++b) {
      unpack_block(tensor.type, src + b * traits.block_bytes, unpacked[static_cast<size_t>(b)]);
    }
    sink(row, unpacked.data(), blocks);
  }
  return static_cast<uint64_t>((row_end - row_begin) * blocks * traits.block_bytes);
}

uint64_t GgufFile::read_f32(const GgufTensor& tensor, int64_t row_begin, int64_t row_end,
                            int64_t col_begin, int64_t col_end, float* out) const {
  check_block(tensor, row_begin, row_end, col_begin, col_end);
  const GgmlTypeTraits traits = *ggml_type_traits(static_cast<uint32_t>(tensor.type));
  const int64_t first_block = col_begin / traits.block_values;
  const int64_t end_block = (col_end + traits.block_values - 1) / traits.block_values;
  const int64_t blocks = end_block - first_block;
  const int64_t skip = col_begin - first_block * traits.block_values;
  const int64_t width = col_end - col_begin;
  const uint64_t row_bytes = tensor.row_bytes();
  // Whole blocks decode straight into `out`; a column range that starts or ends inside a block
  // decodes the block into scratch first.
  const bool aligned = skip == 0 && width == blocks * traits.block_values;
  std::vector<float> scratch(aligned ? 0 : static_cast<size_t>(blocks * traits.block_values));
  for (int64_t row = row_begin; row < row_end; ++row) {
    const std::byte* src = data_ + tensor.offset + static_cast<uint64_t>(row) * row_bytes +
                           static_cast<uint64_t>(first_block * traits.block_bytes);
    if (aligned) {
      dequantize_blocks(tensor.type, src, blocks, out);
    } else {
      dequantize_blocks(tensor.type, src, blocks, scratch.data());
      std::copy_n(scratch.data() + skip, width, out);
    }
    out += width;
  }
  return static_cast<uint64_t>((row_end - row_begin) * blocks * traits.block_bytes);
}

uint64_t GgufFile::read_stored(const GgufTensor& tensor, int64_t row_begin, int64_t row_end,
                               int64_t col_begin, int64_t col_end, void* out) const {
  if (!ggml_float_dtype(tensor.type)) {
    raise(ErrorCode::kUnimplemented, "{}: tensor '{}' is {}; only F32, F16 and BF16 tensors are "
          "read as stored", path_.string(), tensor.name,
          ggml_type_name(static_cast<uint32_t>(tensor.type)));
  }
  check_block(tensor, row_begin, row_end, col_begin, col_end);
  const uint64_t element = ggml_type_traits(static_cast<uint32_t>(tensor.type))->block_bytes;
  const uint64_t row_bytes = tensor.row_bytes();
  const uint64_t width = static_cast<uint64_t>(col_end - col_begin) * element;
  auto* to = static_cast<std::byte*>(out);
  for (int64_t row = row_begin; row < row_end; ++row) {
    std::memcpy(to, data_ + tensor.offset + static_cast<uint64_t>(row) * row_bytes +
                        static_cast<uint64_t>(col_begin) * element, width);
    to += width;
  }
  return static_cast<uint64_t>(row_end - row_begin) * width;
}

}  // namespace tpserve::runtime
