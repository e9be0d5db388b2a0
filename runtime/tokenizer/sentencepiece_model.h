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

}  // namespace tpserve::runtime
