// Text in, text out: the tokenizers of the seed families, behind one interface.
//
//   auto tokenizer = Tokenizer::load(model_dir);         // picks the file the directory has
//   std::vector<int32_t> ids = tokenizer->encode(text);   // throws tpserve::Error on invalid UTF-8
//   std::string text = tokenizer->decode(ids);
//   IncrementalDecoder stream(*tokenizer);                // streaming: whole characters only
//   for (int32_t id : generated) out << stream.push(id);
//   out << stream.finish();
//
// Backends (Tokenizer::load chooses, in this order):
//   tokenizer.json  byte-level BPE (Qwen1.5/2/2.5, Llama-3, the tiny test models): added tokens,
//                   NFC normalizer, Split/ByteLevel pre-tokenizers, BPE merges, TemplateProcessing.
//   qwen.tiktoken   Qwen v1: base64 token + rank lines, Qwen's regex and special tokens.
//   tokenizer.model SentencePiece (Llama-2, InternLM2, ChatGLM2/3) through libsentencepiece, with the
//                   family's special tokens; or, when it is a tiktoken rank file, Meta's Llama-3.
// tokenizer_config.json and config.json (when present) supply the BOS/EOS tokens and added tokens.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tpserve::runtime {

// What a decode has emitted so far; SentencePiece drops the leading space of the first piece only.
struct DecodeState {
  bool at_start = true;         // still at the start of the text (SentencePiece's is_bos_ws)
  bool consumed_space = false;  // the previous piece had its leading space dropped
  bool emitted_text = false;    // some text has been produced
};

// A chat template that came with the tokenizer itself (a GGUF file's tokenizer.chat_template) and
// the special tokens it is rendered with; text empty when there is none.
struct EmbeddedChatTemplate {
  std::string text;
  std::string origin;  // for error messages
  std::vector<std::pair<std::string, std::string>> special_tokens;  // {"bos_token", "<|im_start|>"}
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Loads the tokenizer of a Hugging Face model directory. Throws tpserve::Error naming the file
  // and field when no tokenizer file is found or one is malformed.
  static std::unique_ptr<Tokenizer> load(const std::filesystem::path& model_dir);

  // Ids for `text`. Added/special tokens written in the text (e.g. "<|im_start|>") become their ids.
  // add_special_tokens adds what the model's post-processor adds (Llama-3's <|begin_of_text|>,
  // SentencePiece <s>, ChatGLM's [gMASK] sop); Qwen adds nothing. Throws on invalid UTF-8.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const = 0;

  // Text for `ids`; byte sequences that are not valid UTF-8 become U+FFFD, as Hugging Face does.
  // Throws tpserve::Error(kOutOfRange) for an id outside the vocabulary.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // The raw bytes `id` contributes to a decode (before the UTF-8 repair), updating `state`.
  virtual void append_token_bytes(int32_t id, bool skip_special_tokens, DecodeState& state,
                                  std::string& out) const = 0;

  // One past the largest id, added tokens included.
  virtual int32_t vocab_size() const = 0;
  // The id of a token written as the model writes it (byte-level: "Ġthe"; SentencePiece: "▁the";
  // added tokens by their content).
  virtual std::optional<int32_t> token_to_id(std::string_view token) const = 0;
  virtual bool is_special(int32_t id) const = 0;

  // Tokens that end generation: the configured EOS token(s) (tokenizer_config.json eos_token,
  // config.json / generation_config.json eos_token_id) plus the family's end-of-turn tokens
  // (<|im_end|>, <|endoftext|>, <|eot_id|>, ...) that exist in this vocabulary.
  const std::vector<int32_t>& eos_token_ids() const { return eos_token_ids_; }
  std::optional<int32_t> bos_token_id() const { return bos_token_id_; }

  // Which file and backend this is, for logs ("tokenizer.json (byte-level BPE)").
  virtual std::string describe() const = 0;

  void set_special_ids(std::vector<int32_t> eos, std::optional<int32_t> bos) {
    eos_token_ids_ = std::move(eos);
    bos_token_id_ = bos;
  }

  const EmbeddedChatTemplate& embedded_chat_template() const { return embedded_chat_template_; }
  void set_embedded_chat_template(EmbeddedChatTemplate chat) { embedded_chat_template_ = std::move(chat); }

 private:
  EmbeddedChatTemplate embedded_chat_template_;
  std::vector<int32_t> eos_token_ids_;
  std::optional<int32_t> bos_token_id_;
};

// Streaming detokenization: push ids one at a time and get back the text that became complete.
// Never returns part of a UTF-8 character; the concatenation of every push() and finish() equals
// tokenizer.decode(all ids) (invalid bytes become U+FFFD in both).
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = false)
      : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

  std::string push(int32_t id);
  // Flushes bytes still waiting for the rest of a character (as U+FFFD).
  std::string finish();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  DecodeState state_;
  std::string pending_;  // bytes of an unfinished character
};

}  // namespace tpserve::runtime
