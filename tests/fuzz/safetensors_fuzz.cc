// A safetensors file (runtime/formats/safetensors.cc), header and data: any bytes either open or
// raise tpserve::Error; a file that opens serves every tensor's first and last rows through
// read_f32 and its raw bytes, all inside the mapping.
#include <vector>

#include "common/error.h"
#include "runtime/formats/safetensors.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tpserve;
  fuzz::write_input("model.safetensors", data, size);
  std::unique_ptr<runtime::Checkpoint> checkpoint;
  try {
    checkpoint = runtime::Checkpoint::open(fuzz::scratch_dir());
  } catch (const Error&) {
    return 0;
  }
  for (const std::string& name : checkpoint->tensor_names()) {
    const runtime::TensorEntry& entry = checkpoint->tensor(name);
    const auto& file = checkpoint->file_of(name);
    (void)file.bytes(entry, 0, entry.byte_size());
    if (!is_weight_dtype(entry.dtype) || entry.rows() == 0 || entry.cols() == 0) continue;
    // rows x cols x element bytes fit the input, so these buffers stay small.
    std::vector<float> row(static_cast<size_t>(entry.cols()));
    std::vector<float> column(static_cast<size_t>(entry.rows()));
    checkpoint->read_f32(name, 0, 1, 0, entry.cols(), row.data());
    checkpoint->read_f32(name, entry.rows() - 1, entry.rows(), 0, entry.cols(), row.data());
    checkpoint->read_f32(name, 0, entry.rows(), entry.cols() - 1, entry.cols(), column.data());
    try {
      checkpoint->read_f32(name, 0, entry.rows() + 1, 0, 1, column.data());  // outside: must be refused
      std::abort();
    } catch (const Error&) {
    }
  }
  return 0;
}
