// tokenizer.json (runtime/tokenizer/tokenizer_json.cc): any bytes either load or raise
// tpserve::Error; a tokenizer that loads encodes and decodes without leaving its vocabulary.
#include "common/error.h"
#include "runtime/tokenizer/byte_level_bpe.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tpserve;
  const auto path = fuzz::write_input("tokenizer.json", data, size);
  std::unique_ptr<runtime::Tokenizer> tokenizer;
  try {
    tokenizer = runtime::load_tokenizer_json(path);
  } catch (const Error&) {
    return 0;
  }
  fuzz::exercise_tokenizer(*tokenizer, std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
