// A GGUF file's SentencePiece-style vocabulary (tokenizer.ggml.model "llama": LLaMA-1/2, Mistral,
// TinyLlama, CodeLlama), rebuilt as a SentencePiece ModelProto and tokenized by libsentencepiece,
// so that its ids are llama.cpp's (llama-vocab.cpp, LLAMA_VOCAB_TYPE_SPM). See gguf_spm_vocab.cc
// for the key table.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <filesystem>
#include <memory>

#include "runtime/tokenizer/tokenizer.h"

namespace tpserve::runtime {

// Errors name `file` and the key: kUnimplemented for a key llama.cpp acts on that tpserve does not
// support, kDataLoss for a missing or malformed one.
std::unique_ptr<Tokenizer> load_gguf_spm(const nlohmann::json& metadata, const std::filesystem::path& file);

}  // namespace tpserve::runtime
