// qwen.tiktoken / Meta's tiktoken tokenizer.model (runtime/tokenizer/tiktoken_file.cc): any bytes
// either load or raise tpserve::Error; a tokenizer that loads stays inside its vocabulary.
#include "common/error.h"
#include "runtime/tokenizer/byte_level_bpe.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tpserve;
  const auto path = fuzz::write_input("qwen.tiktoken", data, size);
  // The flavor only changes the specials and the regex; the last byte picks it.
  const auto flavor = size > 0 && (data[size - 1] & 1) ? runtime::TiktokenFlavor::kLlama3 : runtime::TiktokenFlavor::kQwen;
  std::unique_ptr<runtime::Tokenizer> tokenizer;
  try {
    (void)runtime::looks_like_tiktoken(path);
    tokenizer = runtime::load_tiktoken(path, flavor);
  } catch (const Error&) {
    return 0;
  }
  fuzz::exercise_tokenizer(*tokenizer, {});
  return 0;
}
