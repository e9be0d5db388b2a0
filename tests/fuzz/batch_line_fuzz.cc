// One JSON Lines batch input line (runtime/engine/batch_line.cc): parse_batch_line never throws; a
// line it accepts goes through the same validate() as a gRPC request, which raises only
// tpserve::Error. Text prompts and messages use the tiny_bpe fixture's tokenizer and a ChatML
// template.
#include "common/error.h"
#include "runtime/engine/batch_line.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

struct Context {
  std::unique_ptr<tpserve::runtime::Tokenizer> tokenizer;
  tpserve::runtime::ChatTemplate chat_template;
  tpserve::runtime::BatchContext batch;
};

Context& context() {
  static Context* instance = [] {
    auto* c = new Context();
    c->tokenizer = tpserve::runtime::Tokenizer::load(tpserve::fuzz::fixtures_dir() / "tokenizers" / "tiny_bpe");
    c->chat_template = tpserve::runtime::chat_template_for_model(tpserve::fuzz::fixtures_dir() / "qwen2_tied",
                                                                 *c->tokenizer);
    c->batch.tokenizer = c->tokenizer.get();
    c->batch.chat_template = &c->chat_template;
    return c;
  }();
  return *instance;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tpserve;
  const Context& c = context();
  const runtime::BatchItem item =
      runtime::parse_batch_line(std::string_view(reinterpret_cast<const char*>(data), size), 1, c.batch);
  if (!item.error.empty()) return 0;
  try {
    runtime::validate(item.request.params, runtime::SamplingLimits{.vocab_size = c.tokenizer->vocab_size()});
  } catch (const Error&) {
  }
  return 0;
}
