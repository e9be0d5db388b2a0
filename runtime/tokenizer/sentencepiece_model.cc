#include "runtime/tokenizer/sentencepiece_model.h"

#include <sentencepiece_processor.h>

#include "common/error.h"
#include "runtime/tokenizer/added_tokens.h"
#include "runtime/tokenizer/utf8.h"

namespace tpserve::runtime {
namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581, SentencePiece's space

class SentencePieceTokenizer : public Tokenizer {
 public:
  SentencePieceTokenizer(const std::filesystem::path& path, const TokenizerSettings& settings) : source_(path.string()) {
    auto status = processor_.Load(path.string());
    if (!status.ok()) {
      raise(ErrorCode::kDataLoss, "{}: not a SentencePiece model: {}", source_, status.ToString());
    }
    piece_count_ = processor_.GetPieceSize();
    // Decoding drops the first piece's leading space when the model adds a dummy prefix and keeps
    // extra whitespace (sentencepiece_processor.cc, Decode); probe the normalizer for both.
    std::vector<std::string> pieces;
    processor_.Encode("a", &pieces);
    add_dummy_prefix_ = !pieces.empty() && pieces[0].starts_with(kSpaceSymbol);
    std::vector<std::string> spaced;
    processor_.Encode(" a", &spaced);
    remove_extra_whitespaces_ = spaced == pieces;
    for (int id = 0; id < piece_count_; ++id) {
      if (processor_.IsControl(id) && !processor_.IdToPiece(id).empty()) {
        added_.add({processor_.IdToPiece(id), id, true});
      }
    }
    add_family_specials(settings);
    for (const AddedToken& token : settings.added_tokens) added_.add(token);
    vocab_size_ = piece_count_;
    for (const AddedToken& token : added_.all()) vocab_size_ = std::max(vocab_size_, token.id + 1);
    if (settings.add_bos_token.value_or(true) && !is_chatglm_ && processor_.bos_id() >= 0) {
      prefix_ids_.push_back(processor_.bos_id());
    }
  }

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override {
    utf8::validate(text, "text to encode");
    std::vector<int32_t> ids;
    if (add_special_tokens) ids = prefix_ids_;
    std::vector<TextSegment> segments;
    added_.split(text, segments);
    std::vector<int> piece_ids;
    for (const TextSegment& segment : segments) {
      if (segment.added_id >= 0) {
        ids.push_back(segment.added_id);
        continue;
      }
      auto status = processor_.Encode(std::string(segment.text), &piece_ids);
      if (!status.ok()) raise(ErrorCode::kInternal, "{}: SentencePiece encode failed: {}", source_, status.ToString());
      ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
    }
    return ids;
  }

  void append_token_bytes(int32_t id, bool skip_special_tokens, DecodeState& state,
                          std::string& out) const override {
    if (const AddedToken* added = added_.by_id(id); added != nullptr && id >= piece_count_) {
      if (!(skip_special_tokens && added->special)) {
        out += added->content;
        state.emitted_text = state.emitted_text || !added->content.empty();
      }
      return;
    }
    if (id < 0 || id >= piece_count_) {
      raise(ErrorCode::kOutOfRange, "token id {} is not in the vocabulary of {} (size {})", id, source_, vocab_size_);
    }
    if (processor_.IsControl(id)) {  // <s>, </s>: invisible, as SentencePiece decodes them
      append_text("", state, out);
      return;
    }
    std::string piece = processor_.IdToPiece(id);
    if (processor_.IsByte(id)) {  // "<0xE4>"
      out.push_back(static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16)));
      state.emitted_text = true;
      return;
    }
    if (processor_.IsUnknown(id)) piece = " \xE2\x81\x87 ";  // SentencePiece's unknown surface " ⁇ "
    append_text(piece, state, out);
  }

  int32_t vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> token_to_id(std::string_view token) const override {
    if (const AddedToken* added = added_.by_content(token)) return added->id;
    int id = processor_.PieceToId(std::string(token));
    if (id == processor_.unk_id() && token != processor_.IdToPiece(id)) return std::nullopt;
    return id;
  }
  bool is_special(int32_t id) const override {
    const AddedToken* added = added_.by_id(id);
    return added != nullptr && added->special;
  }
  std::string describe() const override { return source_ + " (SentencePiece)"; }

 private:
  // A text piece: "▁" becomes a space, and the first piece loses its leading one
  // (sentencepiece_processor.cc Decode: is_bos_ws turns false once text was emitted or a previous
  // piece consumed that space).
  void append_text(std::string_view piece, DecodeState& state, std::string& out) const {
    if (state.consumed_space || state.emitted_text) state.at_start = false;
    state.consumed_space = false;
    if (state.at_start && (add_dummy_prefix_ || remove_extra_whitespaces_) && piece.starts_with(kSpaceSymbol)) {
      piece.remove_prefix(kSpaceSymbol.size());
      state.consumed_space = !remove_extra_whitespaces_;
    }
    for (size_t pos = 0; pos < piece.size();) {
      if (piece.compare(pos, kSpaceSymbol.size(), kSpaceSymbol) == 0) {
        out.push_back(' ');
        pos += kSpaceSymbol.size();
      } else {
        out.push_back(piece[pos++]);
      }
    }
    if (!piece.empty()) state.emitted_text = true;
  }

  void add_family_specials(const TokenizerSettings& settings) {
    if (settings.model_type != "chatglm") return;
    is_chatglm_ = true;
    // tokenization_chatglm.py (ChatGLM2/3): special tokens numbered from the SentencePiece size.
    std::vector<std::string> names = {"[MASK]", "[gMASK]", "[sMASK]", "sop", "eop",
                                      "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"};
    int32_t next = piece_count_;
    for (const std::string& name : names) added_.add({name, next++, true});
    prefix_ids_ = {added_.by_content("[gMASK]")->id, added_.by_content("sop")->id};
  }

  std::string source_;
  sentencepiece::SentencePieceProcessor processor_;
  AddedTokens added_;
  std::vector<int32_t> prefix_ids_;
  int32_t piece_count_ = 0;
  int32_t vocab_size_ = 0;
  bool add_dummy_prefix_ = true;
  bool remove_extra_whitespaces_ = false;
  bool is_chatglm_ = false;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece(const std::filesystem::path& path, const TokenizerSettings& settings) {
  return std::make_unique<SentencePieceTokenizer>(path, settings);
}

}  // namespace tpserve::runtime
