// The tokenizer of a --model: a checkpoint directory's tokenizer files, or a GGUF file's
// tokenizer.ggml.* metadata.
#pragma once

#include <filesystem>
#include <memory>

#include "runtime/tokenizer/tokenizer.h"

namespace tpserve::launch {

std::unique_ptr<runtime::Tokenizer> load_tokenizer(const std::filesystem::path& model);

}  // namespace tpserve::launch
