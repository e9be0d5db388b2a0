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
#include "common/json_brief.h"
#include "runtime/tokenizer/byte_level_bpe.h"
#include "runtime/tokenizer/model_files.h"

namespace tpserve::runtime {
namespace {

using nlohmann::json;

struct Context {
  std::string file;
  ByteLevelBpeConfig& config;
  bool byte_level = false;  // a ByteLevel pre-tokenizer or decoder was seen
  std::unordered_map<int32_t, std::string> token_of_id;  // model.vocab, raw bytes, for the added-token checks
};

// Sequences nest Sequences; real files go one level deep. The limit keeps a hostile file's nesting
// from becoming recursion depth.
constexpr int kMaxSequenceDepth = 8;

const json& null_json() {
  static const json null;
  return null;
}

// node[key], or null when absent; by reference: copying a deeply nested value would recurse.
const json& member(const json& node, const char* key) {
  if (!node.is_object()) return null_json();
  auto it = node.find(key);
  return it == node.end() ? null_json() : *it;
}

std::string type_of(const json& node) {
  const json& type = member(node, "type");
  return type.is_string() ? type.get<std::string>() : "";
}

void check_depth(const Context& ctx, int depth, std::string_view field) {
  if (depth > kMaxSequenceDepth) {
    raise(ErrorCode::kDataLoss, "{}: {} Sequences nest deeper than {}", ctx.file, field, kMaxSequenceDepth);
  }
}

// A token id read from the file: an integer in [0, kTokenIdLimit), else an error naming `field`.
int32_t token_id(const Context& ctx, const json& value, const std::string& field) {
  // get<int64_t> of an unsigned above 2^63 wraps negative, which is_token_id refuses too.
  if (!value.is_number_integer() || !is_token_id(value.get<int64_t>())) {
    raise(ErrorCode::kDataLoss, "{}: {} is {}, expected a token id (an integer in [0, {}))", ctx.file, field,
          json_brief(value), kTokenIdLimit);
  }
  return static_cast<int32_t>(value.get<int64_t>());
}

[[noreturn]] void unsupported(const Context& ctx, std::string_view field, const std::string& type) {
  raise(ErrorCode::kUnimplemented, "{}: {} of type \"{}\" is not supported", ctx.file, field, type);
}

void parse_normalizer(Context& ctx, const json& node, int depth = 0) {
  if (node.is_null()) return;
  std::string type = type_of(node);
  if (type == "NFC") {
    ctx.config.nfc = true;
  } else if (type == "Sequence") {
    check_depth(ctx, depth, "normalizer");
    for (const json& child : node.at("normalizers")) parse_normalizer(ctx, child, depth + 1);
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

void parse_pre_tokenizer(Context& ctx, const json& node, int depth = 0) {
  if (node.is_null()) return;
  std::string type = type_of(node);
  if (type == "Sequence") {
    check_depth(ctx, depth, "pre_tokenizer");
    for (const json& child : node.at("pretokenizers")) parse_pre_tokenizer(ctx, child, depth + 1);
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
  if (const json& prefix = member(node, "continuing_subword_prefix");
      !prefix.is_null() && !prefix.get<std::string>().empty()) {
    unsupported(ctx, "model.continuing_subword_prefix", prefix.get<std::string>());
  }
  std::unordered_map<std::string, int32_t> vocab;
  for (const auto& [token, value] : node.at("vocab").items()) {
    auto bytes = byte_level_to_bytes(token);
    if (!bytes) raise(ErrorCode::kDataLoss, "{}: model.vocab token \"{}\" is not byte-level", ctx.file, token);
    const int32_t id = token_id(ctx, value, fmt::format("model.vocab[\"{}\"]", token));
    if (auto [it, fresh] = ctx.token_of_id.emplace(id, *bytes); !fresh) {
      raise(ErrorCode::kDataLoss, "{}: model.vocab[\"{}\"] has id {}, which another token already has", ctx.file,
            token, id);
    }
    vocab.emplace(token, id);
    ctx.config.model.add_token(std::move(*bytes), id);
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

// Each added token has an id of its own, or the id of the model.vocab token with the same bytes
// (GPT-2 lists <|endoftext|> in both): two different tokens on one id would make decode ambiguous.
void parse_added_tokens(Context& ctx, const json& node) {
  if (node.is_null()) return;
  std::unordered_map<int32_t, size_t> index_of_id;
  for (size_t i = 0; i < node.size(); ++i) {
    const json& entry = node.at(i);
    AddedToken token;
    const std::string field = fmt::format("added_tokens[{}].id", i);
    token.id = token_id(ctx, entry.at("id"), field);
    token.content = entry.at("content").get<std::string>();
    if (auto [it, fresh] = index_of_id.emplace(token.id, i); !fresh) {
      raise(ErrorCode::kDataLoss, "{}: {} is {}, which added_tokens[{}] already has", ctx.file, field, token.id,
            it->second);
    }
    if (auto it = ctx.token_of_id.find(token.id); it != ctx.token_of_id.end() && it->second != token.content) {
      raise(ErrorCode::kDataLoss, "{}: {} is {}, which model.vocab gives to another token", ctx.file, field,
            token.id);
    }
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
    const json& ids = specials[name].at("ids");
    for (size_t i = 0; i < ids.size(); ++i) {
      const std::string field = fmt::format("post_processor special_tokens[\"{}\"].ids[{}]", name, i);
      const int32_t id = token_id(ctx, ids.at(i), field);
      if (ctx.token_of_id.count(id) == 0 && ctx.config.added.by_id(id) == nullptr) {
        raise(ErrorCode::kDataLoss, "{}: {} is {}, which is neither in model.vocab nor in added_tokens", ctx.file,
              field, id);
      }
      target.push_back(id);
    }
  }
}

void parse_post_processor(Context& ctx, const json& node, int depth = 0) {
  if (node.is_null()) return;
  std::string type = type_of(node);
  if (type == "ByteLevel") return;  // only adjusts offsets
  if (type == "TemplateProcessing") {
    parse_template(ctx, node);
  } else if (type == "Sequence") {
    check_depth(ctx, depth, "post_processor");
    for (const json& child : node.at("processors")) parse_post_processor(ctx, child, depth + 1);
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
    parse_normalizer(ctx, member(root, "normalizer"));
    parse_pre_tokenizer(ctx, member(root, "pre_tokenizer"));
    if (type_of(member(root, "decoder")) == "ByteLevel") ctx.byte_level = true;
    if (!ctx.byte_level) {
      raise(ErrorCode::kUnimplemented,
            "{}: not a byte-level BPE (no ByteLevel pre_tokenizer or decoder); a SentencePiece model needs "
            "its tokenizer.model beside it",
            ctx.file);
    }
    parse_model(ctx, root["model"]);
    parse_added_tokens(ctx, member(root, "added_tokens"));
    parse_post_processor(ctx, member(root, "post_processor"));
  } catch (const json::exception& e) {
    raise(ErrorCode::kDataLoss, "{}: unexpected structure: {}", ctx.file, e.what());
  }
  return std::make_unique<ByteLevelBpeTokenizer>(std::move(config));
}

}  // namespace tpserve::runtime
