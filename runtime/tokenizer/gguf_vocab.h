// A tokenizer from a GGUF file's metadata (llama.cpp's tokenizer.ggml.* keys, gguf-py constants.py):
//   tokenizer.ggml.model "gpt2": byte-level BPE; tokens are GPT-2 byte-level strings, merges are
//     "left right" strings in rank order, tokenizer.ggml.pre names the pre-tokenizer (its split
//     regexes: llama.cpp's llama-vocab.cpp); control (type 3) and user-defined (type 4) tokens are
//     added tokens, matched in the raw text, control ones special.
//   tokenizer.ggml.model "llama": SentencePiece-style tokens / scores / token types, tokenized by
//     libsentencepiece as llama.cpp does (gguf_spm_vocab.h).
// Special ids come from tokenizer.ggml.{bos,eos,eot,eom}_token_id, add_bos/add_eos from
// tokenizer.ggml.add_{bos,eos}_token, the chat template from tokenizer.chat_template.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <filesystem>
#include <memory>

#include "runtime/tokenizer/tokenizer.h"

namespace tpserve::runtime {

// `metadata` is the file's metadata as JSON (runtime/formats/gguf.h); errors name `file` and the
// key: kUnimplemented for another tokenizer.ggml.model, an unknown pre-tokenizer or a feature of a
// llama vocabulary tpserve does not support; kDataLoss for a missing or malformed key, an id
// outside the vocabulary, a merge of unknown tokens.
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const nlohmann::json& metadata,
                                               const std::filesystem::path& file);

}  // namespace tpserve::runtime
