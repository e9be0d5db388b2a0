#include "runtime/tokenizer/sentencepiece_model.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <unordered_map>

#include "common/check.h"
#include "common/error.h"
#include "runtime/tokenizer/added_tokens.h"
#include "runtime/tokenizer/sentencepiece_module/sentencepiece_abi.h"
#include "runtime/tokenizer/utf8.h"

namespace tpserve::runtime {
namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// AddressSanitizer refuses dlopen with RTLD_DEEPBIND (the module would bypass its interceptors).
// The sanitizer builds (CMakePresets.json "asan") run the unit and MPI tests, which link no gRPC,
// so there is no protobuf clash for DEEPBIND to avoid there.
#if defined(__SANITIZE_ADDRESS__)
constexpr int kDeepBind = 0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr int kDeepBind = 0;
#else
constexpr int kDeepBind = RTLD_DEEPBIND;
#endif
#else
constexpr int kDeepBind = RTLD_DEEPBIND;
#endif

// The tpserve_sentencepiece module (see sentencepiece_abi.h for why it is loaded apart), opened
// once per process. TPSERVE_SENTENCEPIECE_MODULE names it where the build-tree path does not hold.
struct SentencePieceModule {
  decltype(&tps_sp_load) load;
  decltype(&tps_sp_load_serialized) load_serialized;
  decltype(&tps_sp_free) free;
  decltype(&tps_sp_piece_size) piece_size;
  decltype(&tps_sp_bos_id) bos_id;
  decltype(&tps_sp_unk_id) unk_id;
  decltype(&tps_sp_is_control) is_control;
  decltype(&tps_sp_is_byte) is_byte;
  decltype(&tps_sp_is_unknown) is_unknown;
  decltype(&tps_sp_piece_to_id) piece_to_id;
  decltype(&tps_sp_id_to_piece) id_to_piece;
  decltype(&tps_sp_encode) encode;
};

void append_bytes(void* ctx, const char* data, size_t size) { static_cast<std::string*>(ctx)->append(data, size); }

void append_ids(void* ctx, const int* ids, size_t count) {
  auto* out = static_cast<std::vector<int32_t>*>(ctx);
  out->insert(out->end(), ids, ids + count);
}

const SentencePieceModule& sentencepiece_module() {
  static std::once_flag once;
  static SentencePieceModule module;
  static std::string failure;
  std::call_once(once, [] {
    const char* from_env = std::getenv("TPSERVE_SENTENCEPIECE_MODULE");
    const std::string path = from_env != nullptr && *from_env != '\0' ? from_env : TPSERVE_SENTENCEPIECE_MODULE_PATH;
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | kDeepBind);
    if (handle == nullptr) {
      failure = fmt::format("cannot load the SentencePiece module {} ({}); set TPSERVE_SENTENCEPIECE_MODULE to "
                            "libtpserve_sentencepiece.so",
                            path, dlerror());
      return;
    }
    const auto symbol = [&](const char* name) {
      void* address = dlsym(handle, name);
      if (address == nullptr && failure.empty()) failure = fmt::format("{}: missing symbol {}", path, name);
      return address;
    };
    const auto version = reinterpret_cast<decltype(&tps_sp_abi_version)>(symbol("tps_sp_abi_version"));
    if (version != nullptr && version() != TPS_SP_ABI_VERSION) {
      failure = fmt::format("{}: module ABI version {} (expected {}); rebuild tpserve", path, version(), TPS_SP_ABI_VERSION);
      return;
    }
#define TPS_SP_SYMBOL(field, name) module.field = reinterpret_cast<decltype(&name)>(symbol(#name))
    TPS_SP_SYMBOL(load, tps_sp_load);
    TPS_SP_SYMBOL(load_serialized, tps_sp_load_serialized);
    TPS_SP_SYMBOL(free, tps_sp_free);
    TPS_SP_SYMBOL(piece_size, tps_sp_piece_size);
    TPS_SP_SYMBOL(bos_id, tps_sp_bos_id);
    TPS_SP_SYMBOL(unk_id, tps_sp_unk_id);
    TPS_SP_SYMBOL(is_control, tps_sp_is_control);
    TPS_SP_SYMBOL(is_byte, tps_sp_is_byte);
    TPS_SP_SYMBOL(is_unknown, tps_sp_is_unknown);
    TPS_SP_SYMBOL(piece_to_id, tps_sp_piece_to_id);
    TPS_SP_SYMBOL(id_to_piece, tps_sp_id_to_piece);
    TPS_SP_SYMBOL(encode, tps_sp_encode);
#undef TPS_SP_SYMBOL
  });
  if (!failure.empty()) raise(ErrorCode::kUnavailable, "{}", failure);
  return module;
}

// One loaded tokenizer.model, owned; the calls the tokenizer makes, in C++ terms.
class SentencePieceProcessor {
 public:
  SentencePieceProcessor() : module_(sentencepiece_module()) {}
  ~SentencePieceProcessor() {
    if (handle_ != nullptr) module_.free(handle_);
  }
  SentencePieceProcessor(const SentencePieceProcessor&) = delete;
  SentencePieceProcessor& operator=(const SentencePieceProcessor&) = delete;

  // Empty on success, else the reason.
  std::string load(const std::string& path) {
    std::string error;
    handle_ = module_.load(path.c_str(), append_bytes, &error);
    return handle_ != nullptr ? std::string() : (error.empty() ? std::string("unknown error") : error);
  }
  std::string load_serialized(std::string_view serialized) {
    std::string error;
    handle_ = module_.load_serialized(serialized.data(), serialized.size(), append_bytes, &error);
    return handle_ != nullptr ? std::string() : (error.empty() ? std::string("unknown error") : error);
  }
  int32_t piece_size() const { return module_.piece_size(handle_); }
  int32_t bos_id() const { return module_.bos_id(handle_); }
  int32_t unk_id() const { return module_.unk_id(handle_); }
  bool is_control(int32_t id) const { return module_.is_control(handle_, id) != 0; }
  bool is_byte(int32_t id) const { return module_.is_byte(handle_, id) != 0; }
  bool is_unknown(int32_t id) const { return module_.is_unknown(handle_, id) != 0; }
  int32_t piece_to_id(std::string_view piece) const { return module_.piece_to_id(handle_, piece.data(), piece.size()); }
  std::string id_to_piece(int32_t id) const {
    std::string piece;
    module_.id_to_piece(handle_, id, append_bytes, &piece);
    return piece;
  }
  // Appends the ids of text to out; empty on success, else the reason.
  std::string encode(std::string_view text, std::vector<int32_t>& out) const {
    std::string error;
    if (module_.encode(handle_, text.data(), text.size(), append_ids, &out, append_bytes, &error) != 0) {
      return error.empty() ? std::string("unknown error") : error;
    }
    return {};
  }

 private:
  const SentencePieceModule& module_;
  void* handle_ = nullptr;
};

class SentencePieceTokenizer : public Tokenizer {
 public:
  SentencePieceTokenizer(const std::filesystem::path& path, const TokenizerSettings& settings) : source_(path.string()) {
    if (std::string error = processor_.load(path.string()); !error.empty()) {
      raise(ErrorCode::kDataLoss, "{}: not a SentencePiece model: {}", source_, error);
    }
    init_from_model();
    add_family_specials(settings);
    for (const AddedToken& token : settings.added_tokens) {
      if (!is_token_id(token.id)) {
        raise(ErrorCode::kDataLoss, "{}: added_tokens_decoder[\"{}\"] ({}): expected a token id in [0, {})",
              (path.parent_path() / "tokenizer_config.json").string(), token.id, token.content, kTokenIdLimit);
      }
      added_.add(token);
    }
    set_vocab_size();
    if (settings.add_bos_token.value_or(true) && !is_chatglm_ && processor_.bos_id() >= 0) {
      prefix_ids_.push_back(processor_.bos_id());
    }
  }

  explicit SentencePieceTokenizer(const SentencePieceVocab& vocab) : source_(vocab.source) {
    if (std::string error = processor_.load_serialized(vocab.serialized_model); !error.empty()) {
      raise(ErrorCode::kDataLoss, "{}: SentencePiece refused the model: {}", source_, error);
    }
    init_from_model();
    for (const AddedToken& token : vocab.added) added_.add(token);
    set_vocab_size();
    prefix_ids_ = vocab.prefix_ids;
    suffix_ids_ = vocab.suffix_ids;
    for (int32_t id : vocab.verbatim_ids) decode_as_[id] = DecodeAs::kVerbatim;
    for (int32_t id : vocab.silent_ids) decode_as_[id] = DecodeAs::kNothing;
  }

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override {
    utf8::validate(text, "text to encode");
    std::vector<int32_t> ids;
    if (add_special_tokens) ids = prefix_ids_;
    std::vector<TextSegment> segments;
    added_.split(text, segments);
    for (const TextSegment& segment : segments) {
      if (segment.added_id >= 0) {
        ids.push_back(segment.added_id);
        continue;
      }
      if (std::string error = processor_.encode(segment.text, ids); !error.empty()) {
        raise(ErrorCode::kInternal, "{}: SentencePiece encode failed: {}", source_, error);
      }
    }
    if (add_special_tokens) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
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
    if (auto it = decode_as_.find(id); it != decode_as_.end()) {
      if (it->second == DecodeAs::kVerbatim) {
        const AddedToken* added = added_.by_id(id);
        TPS_CHECK(added != nullptr, "{}: verbatim token {} is not an added token", source_, id);
        if (!(skip_special_tokens && added->special)) {
          out += added->content;
          state.at_start = false;
          state.consumed_space = false;
          state.emitted_text = state.emitted_text || !added->content.empty();
        }
      }
      return;
    }
    if (processor_.is_control(id)) {  // <s>, </s>: invisible, as SentencePiece decodes them
      append_text("", state, out);
      return;
    }
    std::string piece = processor_.id_to_piece(id);
    if (processor_.is_byte(id)) {  // "<0xE4>" (SentencePiece's loader refuses byte pieces of another form)
      TPS_CHECK(piece.size() == 6 && piece.starts_with("<0x"), "{}: byte piece {} is \"{}\"", source_, id, piece);
      out.push_back(static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16)));
      state.emitted_text = true;
      return;
    }
    if (processor_.is_unknown(id)) piece = " \xE2\x81\x87 ";  // SentencePiece's unknown surface " ⁇ "
    append_text(piece, state, out);
  }

  int32_t vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> token_to_id(std::string_view token) const override {
    if (const AddedToken* added = added_.by_content(token)) return added->id;
    int id = processor_.piece_to_id(token);
    if (id == processor_.unk_id() && token != processor_.id_to_piece(id)) return std::nullopt;
    return id;
  }
  bool is_special(int32_t id) const override {
    const AddedToken* added = added_.by_id(id);
    return added != nullptr && added->special;
  }
  std::string describe() const override { return source_ + " (SentencePiece)"; }

 private:
  enum class DecodeAs { kVerbatim, kNothing };

  // What every model needs once loaded: its size, its normalizer's behaviour, its control pieces.
  void init_from_model() {
    piece_count_ = processor_.piece_size();
    // Decoding drops the first piece's leading space when the model adds a dummy prefix and keeps
    // extra whitespace (sentencepiece_processor.cc, Decode); probe the normalizer for both.
    std::vector<int32_t> plain;
    std::vector<int32_t> spaced;
    (void)processor_.encode("a", plain);
    (void)processor_.encode(" a", spaced);
    add_dummy_prefix_ = !plain.empty() && processor_.id_to_piece(plain[0]).starts_with(kSpaceSymbol);
    remove_extra_whitespaces_ = spaced == plain;
    for (int id = 0; id < piece_count_; ++id) {
      if (processor_.is_control(id) && !processor_.id_to_piece(id).empty()) {
        added_.add({processor_.id_to_piece(id), id, true});
      }
    }
  }

  void set_vocab_size() {
    vocab_size_ = piece_count_;
    for (const AddedToken& token : added_.all()) vocab_size_ = std::max(vocab_size_, token.id + 1);
  }

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
  SentencePieceProcessor processor_;
  AddedTokens added_;
  std::vector<int32_t> prefix_ids_;
  std::vector<int32_t> suffix_ids_;
  std::unordered_map<int32_t, DecodeAs> decode_as_;
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

std::unique_ptr<Tokenizer> load_sentencepiece(const SentencePieceVocab& vocab) {
  return std::make_unique<SentencePieceTokenizer>(vocab);
}

}  // namespace tpserve::runtime
