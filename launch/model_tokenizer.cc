#include "launch/model_tokenizer.h"

#include "runtime/formats/gguf.h"
#include "runtime/model/checkpoint_source.h"
#include "runtime/tokenizer/gguf_vocab.h"

namespace tpserve::launch {

std::unique_ptr<runtime::Tokenizer> load_tokenizer(const std::filesystem::path& model) {
  if (!runtime::is_gguf_file(model)) return runtime::Tokenizer::load(model);
  return runtime::load_gguf_tokenizer(runtime::GgufFile::open(model)->metadata(), model);
}

}  // namespace tpserve::launch
