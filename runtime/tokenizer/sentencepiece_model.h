// SentencePiece tokenizer.model (Llama-2, InternLM2, ChatGLM2/3) through Debian's libsentencepiece,
// with the family's special tokens matched in the text before SentencePiece sees it:
//   - tokenizer_config.json added_tokens_decoder (InternLM2's <|im_start|> <|im_end|> <|action_start|>...)
//   - the model's own control pieces (<s>, </s>) written in the text
//   - ChatGLM2/3 (config.json model_type "chatglm"): [MASK] [gMASK] [sMASK] sop eop (+ ChatGLM3's
//     <|system|> <|user|> <|assistant|> <|observation|>) numbered after the SentencePiece vocabulary,
//     as ChatGLM's tokenization_chatglm.py does, and "[gMASK] sop" as the encode prefix.
// add_special_tokens puts <s> first (tokenizer_config add_bos_token, default true; Llama-2,
// InternLM2) or ChatGLM's prefix. Each text stretch between special tokens is encoded on its own,
// as transformers' (legacy) LlamaTokenizer does.
#pragma once

#include <filesystem>
#include <memory>

#include "runtime/tokenizer/model_files.h"
#include "runtime/tokenizer/tokenizer.h"

namespace tpserve::runtime {

std::unique_ptr<Tokenizer> load_sentencepiece(const std::filesystem::path& path, const TokenizerSettings& settings);

// A SentencePiece model that is not a tokenizer.model file (a GGUF file's tokenizer.ggml.* keys,
// gguf_spm_vocab.cc), given as a serialized ModelProto (sentencepiece_proto.h) that
// libsentencepiece loads, with what the tokenizer adds around it. Besides `added`, the model's
// control pieces are matched in the text, as for a tokenizer.model.
struct SentencePieceVocab {
  std::string serialized_model;
  std::string source;                 // names the origin in messages and describe()
  std::vector<AddedToken> added;      // matched in the raw text before SentencePiece sees it
  std::vector<int32_t> prefix_ids;    // encode(add_special_tokens = true) puts these first ...
  std::vector<int32_t> suffix_ids;    // ... and these last
  std::vector<int32_t> verbatim_ids;  // added tokens decoded as their content, as is
  std::vector<int32_t> silent_ids;    // decoded as nothing
};

// Throws tpserve::Error(kDataLoss) with SentencePiece's reason when the library refuses the model.
std::unique_ptr<Tokenizer> load_sentencepiece(const SentencePieceVocab& vocab);

}  // namespace tpserve::runtime
