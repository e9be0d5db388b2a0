// tokenizer_config.json (runtime/tokenizer/model_files.cc, read_tokenizer_settings): any bytes
// either give the settings or raise tpserve::Error; added tokens' ids are non-negative, and a
// chat_template string goes on to the Jinja parser, which accepts it or raises tpserve::Error.
#include <cstdlib>

#include "common/error.h"
#include "runtime/tokenizer/jinja/template.h"
#include "runtime/tokenizer/model_files.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tpserve;
  fuzz::write_input("tokenizer_config.json", data, size);
  try {
    const runtime::TokenizerSettings settings = runtime::read_tokenizer_settings(fuzz::scratch_dir());
    for (const runtime::AddedToken& token : settings.added_tokens) {
      if (token.id < 0) std::abort();  // an id the vocabulary checks could index with
    }
    if (!settings.chat_template.empty()) {
      try {
        (void)runtime::jinja::Template(settings.chat_template, "chat_template");
      } catch (const Error&) {
      }
    }
  } catch (const Error&) {
  }
  return 0;
}
