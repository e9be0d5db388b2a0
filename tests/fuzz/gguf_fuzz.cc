// A GGUF file (runtime/formats/gguf.cc): any bytes either open or raise tpserve::Error; a file that
// opens decodes every tensor's first and last rows and its last column through read_f32, reads a
// float tensor's first row as stored too (read_stored, widened: read_f32's values bit for bit;
// another type refused), refuses a range outside a tensor, and its metadata goes through the config
// and tokenizer readers
// (runtime/families/gguf_config.cc, runtime/tokenizer/gguf_vocab.cc), which either accept it or
// raise tpserve::Error.
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/dtype.h"
#include "common/error.h"
#include "runtime/families/gguf_config.h"
#include "runtime/formats/gguf.h"
#include "runtime/tokenizer/gguf_vocab.h"
#include "runtime/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tpserve;
  const std::filesystem::path path = fuzz::write_input("model.gguf", data, size);
  std::unique_ptr<runtime::GgufFile> file;
  try {
    file = runtime::GgufFile::open(path);
  } catch (const Error&) {
    return 0;
  }
  std::vector<std::string> names;
  for (const runtime::GgufTensor& tensor : file->tensors()) {
    names.push_back(tensor.name);
    // An empty tensor has no rows to read, and its other dimension is not bounded by the input.
    if (tensor.rows() == 0 || tensor.cols() == 0) continue;
    // The tensor's bytes lie in the input, so a row and a column of it are small.
    std::vector<float> row(static_cast<size_t>(tensor.cols()));
    std::vector<float> column(static_cast<size_t>(tensor.rows()));
    file->read_f32(tensor, 0, 1, 0, tensor.cols(), row.data());
    file->read_f32(tensor, tensor.rows() - 1, tensor.rows(), 0, tensor.cols(), row.data());
    file->read_f32(tensor, 0, tensor.rows(), tensor.cols() - 1, tensor.cols(), column.data());
    const std::optional<DType> dtype = runtime::ggml_float_dtype(tensor.type);
    std::vector<std::byte> stored(static_cast<size_t>(tensor.cols()) * 4);
    try {
      file->read_stored(tensor, 0, 1, 0, tensor.cols(), stored.data());
      if (!dtype) std::abort();  // a block type read as stored
      std::vector<float> widened(static_cast<size_t>(tensor.cols()));
      convert_to_f32(*dtype, stored.data(), widened.data(), tensor.cols());
      file->read_f32(tensor, 0, 1, 0, tensor.cols(), row.data());
      if (std::memcmp(widened.data(), row.data(), row.size() * sizeof(float)) != 0) std::abort();
    } catch (const Error&) {
      if (dtype) std::abort();  // a float tensor refused
    }
    try {
      file->read_f32(tensor, 0, tensor.rows() + 1, 0, 1, column.data());  // outside: refused
      std::abort();
    } catch (const Error&) {
    }
  }
  try {
    runtime::model_config_from_gguf(file->metadata(), names, path);
  } catch (const Error&) {
  }
  try {
    auto tokenizer = runtime::load_gguf_tokenizer(file->metadata(), path);
    fuzz::exercise_tokenizer(*tokenizer, {});
  } catch (const Error&) {
  }
  return 0;
}
