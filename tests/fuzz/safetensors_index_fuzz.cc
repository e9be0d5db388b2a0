// model.safetensors.index.json (runtime/formats/safetensors.cc, Checkpoint::open_index): any bytes
// either open or raise tpserve::Error. The directory holds two real shards (the llama_gqa
// fixture's), so an index can name files that exist, files that do not, and paths outside it.
#include "common/error.h"
#include "runtime/formats/safetensors.h"
#include "tests/fuzz/fuzz_support.h"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const fs::path fixture = tpserve::fuzz::fixtures_dir() / "llama_gqa";
  for (const char* shard : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}) {
    fs::copy_file(fixture / shard, tpserve::fuzz::scratch_dir() / shard, fs::copy_options::overwrite_existing);
  }
  fs::create_directories(tpserve::fuzz::scratch_dir() / "sub");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tpserve;
  fuzz::write_input("model.safetensors.index.json", data, size);
  try {
    auto checkpoint = runtime::Checkpoint::open(fuzz::scratch_dir());
    for (const std::string& name : checkpoint->tensor_names()) (void)checkpoint->tensor(name).numel();
  } catch (const Error&) {
  }
  return 0;
}
