// tokenizer.json (Hugging Face `tokenizers`) for byte-level BPE models. Supported components, the
// ones the seed families' files use:
//   normalizer     null, NFC (Qwen1.5/2/2.5), Sequence of those
//   pre_tokenizer  ByteLevel (use_regex: GPT-2's pattern; add_prefix_space), Split (Regex or String
//                  pattern, behavior Isolated: Qwen2's and Llama-3's patterns), Digits, Sequence
//   model          BPE (vocab, merges as "a b" or ["a", "b"], ignore_merges)
//   post_processor null, ByteLevel (no change to ids), TemplateProcessing (Llama-3 adds
//                  <|begin_of_text|>), Sequence of those
//   decoder        ByteLevel (the bytes of each token, then UTF-8 repair)
// Anything else is refused with kUnimplemented naming the component, never silently ignored.
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "runtime/tokenizer/byte_level_bpe.h"
#include "runtime/tokenizer/model_files.h"

namespace tpserve::runtime {
namespace {

using nlohmann::json;

struct Context {
  std::string file;
  ByteLevelBpeConfig& config;
  bool byte_level = false;  // a ByteLevel pre-tokenizer or decoder was seen
};

std::string type_of(const json& node) { return node.is_object() ? node.value("type", std::string()) : ""; }

[[noreturn]] void unsupported(const Context& ctx, std::string_view field, const std::string& type) {
  raise(ErrorCode::kUnimplemented, "{}: {} of type \"{}\" is not supported", ctx.file, field, type);
}

void parse_normalizer(Context& ctx, const json& node) {
  if (node.is_null()) return;
  std::string type = type_of(node);
  if (type == "NFC") {
    ctx.config.nfc = true;
  } else if (type == "Sequence") {
    for (const json& child : node.at("normalizers")) parse_normalizer(ctx, child);
  } else {
    unsupported(ctx, "normalizer", type);
  }
}

// PCRE2 \Q...\E quotes a literal; a literal "\E" inside is split around.
std::string quote_literal(const std::string& text) {
  std::string out = "\\Q";
  for (size_t pos = 0; pos < text.size(); ++pos) {
    if (text.compare(pos, 2, "\\E") == 0) {
      out += "\\E\\\\E\\Q";
      ++pos;
    } else {
      out += text[pos];
    }
  }
  return out + "\\E";
}

void add_splitter(Context& ctx, std::string_view pattern, std::string_view field) {
  ctx.config.splitters.push_back(std::make_unique<RegexSplitter>(pattern, ctx.file + ": " + std::string(field)));
}

void parse_pre_tokenizer(Context& ctx, const json& node) {
  if (node.is_null()) return;
  std::string type = type_of(node);
  if (type == "Sequence") {
    for (const json& child : node.at("pretokenizers")) parse_pre_tokenizer(ctx, child);
  } else if (type == "ByteLevel") {
    ctx.byte_level = true;
    ctx.config.add_prefix_space = node.value("add_prefix_space", false);
    if (node.value("use_regex", true)) add_splitter(ctx, kGpt2SplitPattern, "pre_tokenizer ByteLevel");
  } else if (type == "Split") {
    if (node.value("behavior", std::string()) != "Isolated" || node.value("invert", false)) {
      unsupported(ctx, "pre_tokenizer Split behavior", node.value("behavior", std::string()) +
                                                           (node.value("invert", false) ? " (inverted)" : ""));
    }
    const json& pattern = node.at("pattern");
    if (pattern.contains("Regex")) {
      add_splitter(ctx, pattern["Regex"].get<std::string>(), "pre_tokenizer.pattern.Regex");
    } else {
      add_splitter(ctx, quote_literal(pattern.at("String").get<std::string>()), "pre_tokenizer.pattern.String");
    }
  } else if (type == "Digits") {
    add_splitter(ctx, node.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+", "pre_tokenizer Digits");
  } else {
    unsupported(ctx, "pre_tokenizer", type);
  }
}

int32_t vocab_id(const Context& ctx, const std::unordered_map<std::string, int32_t>& vocab,
                 const std::string& token, size_t merge_index) {
  auto it = vocab.find(token);
  if (it == vocab.end()) {
    raise(ErrorCode::kDataLoss, "{}: model.merges[{}] uses \"{}\", which is not in model.vocab", ctx.file,
          merge_index, token);
  }
  return it->second;
}

void parse_model(Context& ctx, const json& node) {
  std::string type = type_of(node);
  if (!type.empty() && type != "BPE") unsupported(ctx, "model", type);
  if (!node.value("continuing_subword_prefix", json()).is_null() &&
      !node["continuing_subword_prefix"].get<std::string>().empty()) {
    unsupported(ctx, "model.continuing_subword_prefix", node["continuing_subword_prefix"].get<std::string>());
  }
  std::unordered_map<std::string, int32_t> vocab;
  for (const auto& [token, id] : node.at("vocab").items()) {
    auto bytes = byte_level_to_bytes(token);
    if (!bytes) raise(ErrorCode::kDataLoss, "{}: model.vocab token \"{}\" is not byte-level", ctx.file, token);
    vocab.emplace(token, id.get<int32_t>());
    ctx.config.model.add_token(std::move(*bytes), id.get<int32_t>());
  }
  const json& merges = node.at("merges");
  for (size_t i = 0; i < merges.size(); ++i) {
    std::string left, right;
    if (merges[i].is_string()) {
      const std::string& merge = merges[i].get_ref<const std::string&>();
      size_t space = merge.find(' ');
      if (space == std::string::npos) {
        raise(ErrorCode::kDataLoss, "{}: model.merges[{}] \"{}\" is not two tokens", ctx.file, i, merge);
      }
      left = merge.substr(0, space);
      right = merge.substr(space + 1);
    } else {
      left = merges[i].at(0).get<std::string>();
      right = merges[i].at(1).get<std::string>();
    }
    int32_t merged = vocab_id(ctx, vocab, left + right, i);
    ctx.config.model.add_merge(vocab_id(ctx, vocab, left, i), vocab_id(ctx, vocab, right, i), merged,
                               static_cast<int32_t>(i));
  }
  // ignore_merges: a piece that is itself a token is taken whole (tokenizers >= 0.19; Llama-3).
  ctx.config.model.set_whole_piece_lookup(node.value("ignore_merges", false));
}

void parse_added_tokens(Context& ctx, const json& node) {
  if (node.is_null()) return;
  for (const json& entry : node) {
    AddedToken token;
    token.id = entry.at("id").get<int32_t>();
    token.content = entry.at("content").get<std::string>();
    token.special = entry.value("special", false);
    token.lstrip = entry.value("lstrip", false);
    token.rstrip = entry.value("rstrip", false);
    ctx.config.added.add(std::move(token));
  }
}

// TemplateProcessing's "single" template: special tokens around the sequence $A.
void parse_template(Context& ctx, const json& node) {
  const json& specials = node.at("special_tokens");
  bool after_sequence = false;
  for (const json& item : node.at("single")) {
    if (item.contains("Sequence")) {
      after_sequence = true;
      continue;
    }
    std::string name = item.at("SpecialToken").at("id").get<std::string>();
    if (!specials.contains(name)) {
      raise(ErrorCode::kDataLoss, "{}: post_processor template uses \"{}\", missing from special_tokens", ctx.file,
            name);
    }
    auto& target = after_sequence ? ctx.config.suffix_ids : ctx.config.prefix_ids;
    for (const json& id : specials[name].at("ids")) target.push_back(id.get<int32_t>());
  }
}

void parse_post_processor(Context& ctx, const json& node) {
  if (node.is_null()) return;
  std::string type = type_of(node);
  if (type == "ByteLevel") return;  // only adjusts offsets
  if (type == "TemplateProcessing") {
    parse_template(ctx, node);
  } else if (type == "Sequence") {
    for (const json& child : node.at("processors")) parse_post_processor(ctx, child);
  } else {
    unsupported(ctx, "post_processor", type);
  }
}

}  // namespace

std::unique_ptr<ByteLevelBpeTokenizer> load_tokenizer_json(const std::filesystem::path& path) {
  json root = read_json_file(path);
  ByteLevelBpeConfig config;
  config.source = path.string() + " (byte-level BPE)";
  Context ctx{path.string(), config};
  try {
    if (!root.is_object() || !root.contains("model")) {
      raise(ErrorCode::kDataLoss, "{}: no \"model\" object", ctx.file);
    }
    parse_normalizer(ctx, root.value("normalizer", json()));
    parse_pre_tokenizer(ctx, root.value("pre_tokenizer", json()));
    if (type_of(root.value("decoder", json())) == "ByteLevel") ctx.byte_level = true;
    if (!ctx.byte_level) {
      raise(ErrorCode::kUnimplemented,
            "{}: not a byte-level BPE (no ByteLevel pre_tokenizer or decoder); a SentencePiece model needs "
            "its tokenizer.model beside it",
            ctx.file);
    }
    parse_model(ctx, root["model"]);
    parse_added_tokens(ctx, root.value("added_tokens", json()));
    parse_post_processor(ctx, root.value("post_processor", json()));
  } catch (const json::exception& e) {
    raise(ErrorCode::kDataLoss, "{}: unexpected structure: {}", ctx.file, e.what());
  }
  return std::make_unique<ByteLevelBpeTokenizer>(std::move(config));
}

}  // namespace tpserve::runtime
