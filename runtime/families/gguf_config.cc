#include "runtime/families/gguf_config.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

#include "common/error.h"
#include "common/field_table.h"
#include "runtime/families/load_config.h"

namespace tpserve::runtime {

using nlohmann::json;

namespace {

using enum FieldUse;

// general.* (gguf-py constants.py Keys.General): bookkeeping except the two the reader uses.
constexpr FieldRule kGeneralKeys[] = {
    {"general.architecture", kSupported, "picks the adapter"},
    {"general.alignment", kSupported, "data alignment (read by the GGUF reader)"},
    {"general.quantization_version", kHarmless, "version of the quantized block layouts"},
    {"general.file_type", kHarmless, "the dominant tensor type; each tensor states its own"},
    {"general.type", kHarmless, "model or adapter"},
    {"general.name", kHarmless, "bookkeeping"}, {"general.author", kHarmless, "bookkeeping"},
    {"general.version", kHarmless, "bookkeeping"}, {"general.organization", kHarmless, "bookkeeping"},
    {"general.finetune", kHarmless, "bookkeeping"}, {"general.basename", kHarmless, "bookkeeping"},
    {"general.description", kHarmless, "bookkeeping"}, {"general.quantized_by", kHarmless, "bookkeeping"},
    {"general.size_label", kHarmless, "bookkeeping"}, {"general.license", kHarmless, "bookkeeping"},
    {"general.license.name", kHarmless, "bookkeeping"}, {"general.license.link", kHarmless, "bookkeeping"},
    {"general.url", kHarmless, "bookkeeping"}, {"general.doi", kHarmless, "bookkeeping"},
    {"general.uuid", kHarmless, "bookkeeping"}, {"general.repo_url", kHarmless, "bookkeeping"},
    {"general.source.url", kHarmless, "bookkeeping"}, {"general.source.repo_url", kHarmless, "bookkeeping"},
    {"general.tags", kHarmless, "bookkeeping"}, {"general.languages", kHarmless, "bookkeeping"},
    {"general.datasets", kHarmless, "bookkeeping"}, {"general.base_model.count", kHarmless, "bookkeeping"},
};

// tokenizer.* (read by runtime/tokenizer/gguf_vocab.cc).
constexpr FieldRule kTokenizerKeys[] = {
    {"tokenizer.ggml.model", kSupported, "gpt2 (byte-level BPE) or llama (SentencePiece)"},
    {"tokenizer.ggml.pre", kSupported, "the pre-tokenizer's split regex"},
    {"tokenizer.ggml.tokens", kSupported, "the vocabulary"},
    {"tokenizer.ggml.token_type", kSupported, "normal, control, user-defined, byte tokens"},
    {"tokenizer.ggml.scores", kSupported, "SentencePiece piece scores"},
    {"tokenizer.ggml.merges", kSupported, "BPE merges"},
    {"tokenizer.ggml.bos_token_id", kSupported, "BOS id"},
    {"tokenizer.ggml.eos_token_id", kSupported, "EOS id"},
    {"tokenizer.ggml.eot_token_id", kSupported, "end-of-turn id, ends generation"},
    {"tokenizer.ggml.eom_token_id", kSupported, "end-of-message id, ends generation"},
    {"tokenizer.ggml.unknown_token_id", kSupported, "the unknown piece"},
    {"tokenizer.ggml.padding_token_id", kHarmless, "padding is not used in serving"},
    {"tokenizer.ggml.separator_token_id", kHarmless, "not used by decoder-only serving"},
    {"tokenizer.ggml.add_bos_token", kSupported, "BOS before the text"},
    {"tokenizer.ggml.add_eos_token", kSupported, "EOS after the text"},
    {"tokenizer.ggml.add_space_prefix", kSupported, "SentencePiece's leading space"},
    {"tokenizer.ggml.remove_extra_whitespaces", kSupported, "false only (gguf_spm_vocab.cc refuses true)"},
    {"tokenizer.ggml.precompiled_charsmap", kSupported, "refused by gguf_spm_vocab.cc, naming the key"},
    {"tokenizer.chat_template", kSupported, "the model's Jinja chat template"},
};

// The per-architecture keys (gguf-py Keys.LLM / Keys.Attention / Keys.Rope), with the
// architecture's prefix; `{}` below is that prefix.
struct ArchKey {
  const char* suffix;
  FieldUse use;
  const char* note;
};
constexpr ArchKey kArchKeys[] = {
    {"vocab_size", kSupported, "vocab_size"},
    {"context_length", kSupported, "max_position_embeddings"},
    {"embedding_length", kSupported, "hidden_size"},
    {"block_count", kSupported, "num_hidden_layers"},
    {"feed_forward_length", kSupported, "intermediate_size"},
    {"attention.head_count", kSupported, "num_attention_heads"},
    {"attention.head_count_kv", kSupported, "num_key_value_heads"},
    {"attention.layer_norm_rms_epsilon", kSupported, "rms_norm_eps"},
    {"attention.key_length", kSupported, "head_dim"},
    {"attention.value_length", kSupported, "head_dim (must equal key_length)"},
    {"rope.freq_base", kSupported, "rope_theta"},
    {"rope.dimension_count", kSupported, "rotary dims (must be head_dim)"},
    {"rope.scaling.type", kRefused, "rope scaling from GGUF metadata is not supported yet"},
    {"rope.scaling.factor", kRefused, "rope scaling from GGUF metadata is not supported yet"},
    {"rope.scaling.original_context_length", kHarmless, "used only with rope scaling"},
    {"rope.scaling.finetuned", kHarmless, "bookkeeping"},
    {"expert_count", kRefused, "mixture-of-experts GGUF files are not supported"},
    {"expert_used_count", kRefused, "mixture-of-experts GGUF files are not supported"},
    {"attention.sliding_window", kRefused, "sliding-window attention is not supported yet"},
};

// GGUF key suffix -> the config.json field it becomes.
struct KeyField {
  const char* suffix;
  const char* field;
};
constexpr KeyField kKeyFields[] = {
    {"embedding_length", "hidden_size"},
    {"feed_forward_length", "intermediate_size"},
    {"block_count", "num_hidden_layers"},
    {"attention.head_count", "num_attention_heads"},
    {"attention.head_count_kv", "num_key_value_heads"},
    {"attention.layer_norm_rms_epsilon", "rms_norm_eps"},
    {"attention.key_length", "head_dim"},
    {"context_length", "max_position_embeddings"},
    {"rope.freq_base", "rope_theta"},
    {"vocab_size", "vocab_size"},
};

struct GgufArchitecture {
  const char* gguf_name;
  const char* hf_architecture;
};
constexpr GgufArchitecture kArchitectures[] = {
    {"llama", "LlamaForCausalLM"},
    {"qwen2", "Qwen2ForCausalLM"},
};

[[noreturn]] void fail_key(const std::filesystem::path& file, const std::string& key,
                           const std::string& problem) {
  raise(ErrorCode::kInvalidArgument, "{}: metadata '{}': {}", file.string(), key, problem);
}

// The metadata value of `key` when it is a number, else a failure naming the key.
const json* number_at(const json& metadata, const std::string& key,
                      const std::filesystem::path& file) {
  auto it = metadata.find(key);
  if (it == metadata.end()) return nullptr;
  if (!it->is_number() && !it->is_boolean()) {
    fail_key(file, key, fmt::format("expected a number, got a {}", it->type_name()));
  }
  return &*it;
}

}  // namespace

ModelConfig model_config_from_gguf(const json& metadata, const std::vector<std::string>& tensor_names,
                                   const std::filesystem::path& file) {
  auto arch_value = metadata.find("general.architecture");
  if (arch_value == metadata.end() || !arch_value->is_string()) {
    fail_key(file, "general.architecture", "missing or not a string");
  }
  const std::string arch = arch_value->get<std::string>();
  const GgufArchitecture* known = nullptr;
  for (const GgufArchitecture& entry : kArchitectures) {
    if (arch == entry.gguf_name) known = &entry;
  }
  if (known == nullptr) {
    raise(ErrorCode::kUnimplemented, "{}: metadata 'general.architecture': '{}' is not supported "
          "(llama, qwen2 are)", file.string(), arch.substr(0, 64));
  }
  // The architecture's key table: names with the prefix, kept alive for check_fields' spans.
  std::vector<std::string> names;
  for (const ArchKey& key : kArchKeys) names.push_back(arch + "." + key.suffix);
  std::vector<FieldRule> arch_rules;
  for (size_t i = 0; i < std::size(kArchKeys); ++i) {
    arch_rules.push_back({names[i], kArchKeys[i].use, kArchKeys[i].note});
  }
  const std::vector<FieldTable> tables = {kGeneralKeys, kTokenizerKeys, arch_rules};
  std::vector<std::string> unknown = check_fields(metadata, file, tables);

  const std::set<std::string> tensors(tensor_names.begin(), tensor_names.end());
  json config = json::object();
  config["architectures"] = json::array({known->hf_architecture});
  config["model_type"] = arch;
  for (const KeyField& mapping : kKeyFields) {
    const std::string key = arch + "." + mapping.suffix;
    if (const json* value = number_at(metadata, key, file)) config[mapping.field] = *value;
  }
  if (!config.contains("vocab_size")) {
    auto tokens = metadata.find("tokenizer.ggml.tokens");
    if (tokens != metadata.end() && tokens->is_array()) config["vocab_size"] = tokens->size();
  }
  const std::string key_length = arch + ".attention.key_length";
  const std::string value_length = arch + ".attention.value_length";
  if (const json* value = number_at(metadata, value_length, file)) {
    if (!config.contains("head_dim") || config["head_dim"] != *value) {
      fail_key(file, value_length, "differs from " + key_length + " (tpserve needs equal q/k and v "
               "head sizes)");
    }
  }
  if (const json* rotary = number_at(metadata, arch + ".rope.dimension_count", file)) {
    config["rope_dimension_count"] = *rotary;  // checked against head_dim below
  }
  for (const char* id : {"bos_token_id", "eos_token_id"}) {
    if (const json* value = number_at(metadata, std::string("tokenizer.ggml.") + id, file)) {
      config[id] = *value;
    }
  }
  // convert_hf_to_gguf writes output.weight only for untied heads.
  config["tie_word_embeddings"] = !tensors.contains("output.weight");
  if (arch == "llama") config["attention_bias"] = tensors.contains("blk.0.attn_q.bias");

  const json rotary = config.contains("rope_dimension_count") ? config["rope_dimension_count"] : json();
  config.erase("rope_dimension_count");
  ModelConfig model;
  try {
    model = config_from_json(config, file);
  } catch (const Error& error) {
    // Name the GGUF key behind the config.json field the shared checks complain about.
    std::string message = error.what();
    for (const KeyField& mapping : kKeyFields) {
      if (message.find(fmt::format("field '{}'", mapping.field)) != std::string::npos) {
        message += fmt::format(" (GGUF metadata '{}.{}')", arch, mapping.suffix);
        break;
      }
    }
    raise(error.code(), "{}", message);
  }
  if (!rotary.is_null() && rotary != json(model.head_dim)) {
    fail_key(file, arch + ".rope.dimension_count",
             fmt::format("{} differs from the head size {} (partial rotary is not supported for "
                         "GGUF files)", rotary.dump(), model.head_dim));
  }
  model.dir = file;
  model.unknown_fields = std::move(unknown);
  warn_unknown_fields(file, model.unknown_fields);
  return model;
}

std::vector<int64_t> rope_pairs_to_halves_rows(int heads, int head_dim) {
  std::vector<int64_t> order;
  order.reserve(static_cast<size_t>(heads) * head_dim);
  const int half_dim = head_dim / 2;
  for (int head = 0; head < heads; ++head) {
    for (int half = 0; half < 2; ++half) {
      for (int j = 0; j < half_dim; ++j) {
        order.push_back(static_cast<int64_t>(head) * head_dim + 2 * j + half);
      }
    }
  }
  return order;
}

std::vector<GgufTensorName> gguf_tensor_names(const ModelConfig& config) {
  // gguf-py's tensor_mapping.py: the Hugging Face name of each GGUF tensor of a llama-like block.
  // llama.cpp's LlamaModel.modify_tensors permutes q_proj / k_proj (not Qwen2Model's).
  const bool llama = config.model_type == "llama";
  std::vector<GgufTensorName> names = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
  };
  if (!config.tie_word_embeddings) names.push_back({"output.weight", "lm_head.weight"});
  for (int layer = 0; layer < config.num_layers; ++layer) {
    const std::string blk = fmt::format("blk.{}.", layer);
    const std::string hf = fmt::format("model.layers.{}.", layer);
    names.push_back({blk + "attn_norm.weight", hf + "input_layernorm.weight"});
    names.push_back({blk + "ffn_norm.weight", hf + "post_attention_layernorm.weight"});
    names.push_back({blk + "attn_q.weight", hf + "self_attn.q_proj.weight", llama ? config.num_heads : 0});
    names.push_back({blk + "attn_k.weight", hf + "self_attn.k_proj.weight", llama ? config.num_kv_heads : 0});
    names.push_back({blk + "attn_v.weight", hf + "self_attn.v_proj.weight"});
    names.push_back({blk + "attn_output.weight", hf + "self_attn.o_proj.weight"});
    names.push_back({blk + "ffn_gate.weight", hf + "mlp.gate_proj.weight"});
    names.push_back({blk + "ffn_up.weight", hf + "mlp.up_proj.weight"});
    names.push_back({blk + "ffn_down.weight", hf + "mlp.down_proj.weight"});
    if (config.qkv_bias) {
      // A bias is one row per output: the same permutation applies.
      names.push_back({blk + "attn_q.bias", hf + "self_attn.q_proj.bias", llama ? config.num_heads : 0});
      names.push_back({blk + "attn_k.bias", hf + "self_attn.k_proj.bias", llama ? config.num_kv_heads : 0});
      names.push_back({blk + "attn_v.bias", hf + "self_attn.v_proj.bias"});
    }
    if (config.o_bias) names.push_back({blk + "attn_output.bias", hf + "self_attn.o_proj.bias"});
  }
  return names;
}

}  // namespace tpserve::runtime
