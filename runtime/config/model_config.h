// The canonical decoder's hyper-parameters and the config.json field readers the family adapters
// share. Loading a config.json (which needs the adapter registry) is runtime/families/load_config.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/dtype.h"
#include "runtime/config/moe_config.h"
#include "runtime/config/quant_config.h"

namespace tpserve::runtime {

// Dynamic NTK raises the rotary base for contexts longer than the trained one (L > trained_context):
// base' = base * g^(d / (d - 2)), d = rotary_dim, i.e. inv_freq'_i = inv_freq_i * g^(-2i / (d - 2)).
//   kDynamic (transformers' "dynamic", InternLM2's rope_scaling "dynamic"): every forward recomputes
//     g = factor * L / trained_context - (factor - 1) from L = max(position) + 1 of that forward, so
//     a prompt token sees the prompt's length and a decode token its own position + 1;
//   kQwenNtk (Qwen v1's use_dynamic_ntk, QWenModel.get_ntk_alpha): g = alpha =
//     max(2^ceil(log2(L / seq_length) + 1) - 1, 1) with L the PROMPT length, fixed at prefill and
//     reused by every decode step of the sequence.
// Keys in the KV cache keep the rotation they were written with. runtime/model/rope_tables.h computes g.
enum class RopeScaling { kNone, kLinear, kLlama3, kDynamic, kQwenNtk, kYarn };

struct RopeConfig {
  float theta = 10000.0f;
  int rotary_dim = 0;        // dims of each head that rotate
  bool interleaved = false;  // ChatGLM pairs (2i, 2i+1); else rotate_half
  RopeScaling scaling = RopeScaling::kNone;
  float factor = 1.0f;
  // Llama-3.1 ("rope_type": "llama3") frequency bands.
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int64_t original_max_position_embeddings = 8192;
  // Dynamic NTK's trained length: max_position_embeddings as in config.json (kDynamic) or Qwen v1's
  // seq_length (kQwenNtk). 0 for the other scalings.
  int64_t trained_context = 0;
  // YaRN ("rope_type": "yarn"; transformers' _compute_yarn_parameters, rope_tables.cc): frequencies
  // that turn fewer than beta_slow times in original_max_position_embeddings are divided by
  // `factor`, those turning more than beta_fast times are kept, with a linear ramp between (its
  // ends rounded outward when `truncate`).
  float beta_fast = 32.0f;
  float beta_slow = 1.0f;
  bool truncate = true;
  // Multiplies cos and sin, so every rotated q.k product by its square (YaRN's mscale); 1 otherwise.
  float attention_factor = 1.0f;
};

struct ModelConfig {
  std::filesystem::path dir;
  std::string architecture;  // "LlamaForCausalLM"
  std::string model_type;    // "llama"
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  float rms_norm_eps = 1e-6f;
  // The longest context tpserve serves (every context-length check, the default blocks per
  // sequence): config.json's max_position_embeddings, except where a long-context scheme extends it
  // (dynamic NTK: max_position_embeddings * factor; Qwen v1 with use_dynamic_ntk / use_logn_attn:
  // 32767, the positions modeling_qwen.py's logn table covers; ChatGLM: seq_length).
  int64_t max_position_embeddings = 0;
  RopeConfig rope;
  // Qwen v1's use_logn_attn: the query at position p is multiplied by log(p + 1) / log(this) once
  // p + 1 > this (its seq_length); 0 = off.
  int64_t logn_attn_context = 0;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // bias on q/k/v (Qwen2 always; LLaMA with attention_bias)
  bool o_bias = false;    // bias on the output projection (LLaMA attention_bias)
  bool mlp_bias = false;  // bias on gate/up/down (LLaMA mlp_bias)
  // The fused QKV tensor holds [q, k, v] per head instead of the adapter's layout (ChatGLM without
  // multi_query_attention); the weight plan then reads it as parallel::QkvLayout::kPerHead.
  bool qkv_per_head = false;
  DType torch_dtype = DType::kF32;
  std::vector<int32_t> eos_token_ids;
  int32_t bos_token_id = -1;
  SparseMoeConfig moe;  // sparse MLPs (Qwen2-MoE); num_experts 0 for dense families
  QuantConfig quant;    // GPTQ / AWQ linear weights; method kNone for float checkpoints
  // config.json fields that no table of the family knows (rope_scaling keys as
  // "rope_scaling.<key>"), logged once at load: see common/field_table.h.
  std::vector<std::string> unknown_fields;
};

// The names a family gives the shape fields, so that the shared size checks name the field the
// user wrote (LLaMA's names by default).
struct ShapeFieldNames {
  const char* hidden_size = "hidden_size";
  const char* intermediate_size = "intermediate_size";
  const char* vocab_size = "vocab_size";
  const char* num_layers = "num_hidden_layers";
  const char* num_heads = "num_attention_heads";
  const char* head_dim = "head_dim";
  const char* context = "max_position_embeddings";
};

// Reads and parses a JSON file; errors name the file (missing, unreadable, malformed).
nlohmann::json read_config_json(const std::filesystem::path& file);

// Field readers shared by the family adapters; errors name config.json's path and the field.
class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& document, std::filesystem::path file);
  bool has(const char* field) const;
  // Integers are at most INT32_MAX (every shape field becomes an int, a size or a divisor, and
  // token ids and positions are int32); floats must be finite.
  int64_t positive_int(const char* field) const;
  int64_t non_negative_int_or(const char* field, int64_t fallback) const;
  int64_t positive_int_or(const char* field, int64_t fallback) const;
  float positive_float_or(const char* field, float fallback) const;
  bool bool_or(const char* field, bool fallback) const;
  std::string string_or(const char* field, const std::string& fallback) const;
  std::vector<int32_t> token_ids_or_empty(const char* field) const;  // int or list of ints
  const nlohmann::json& document() const { return json_; }
  const std::filesystem::path& file() const { return file_; }
  [[noreturn]] void fail(const char* field, const std::string& problem) const;

 private:
  const nlohmann::json& json_;
  std::filesystem::path file_;
};

// Helpers the adapters' read_config call.
// model_type, torch_dtype, eos/bos ids, tie_word_embeddings, hidden_act (silu only).
void read_common_fields(const ConfigReader& reader, ModelConfig& config);
// The LLaMA-style shape fields (hidden_size, intermediate_size, vocab_size, num_hidden_layers,
// num_attention_heads, num_key_value_heads, head_dim, rms_norm_eps, max_position_embeddings) and
// rope (rope_theta + rope_scaling, or rope_parameters; partial_rotary_factor).
void read_llama_style_fields(const ConfigReader& reader, ModelConfig& config);
// head_dim from `field` when given, else hidden_size / num_heads, which must then divide evenly
// (names num_attention_heads otherwise). config.hidden_size and num_heads must be read first.
int read_head_dim(const ConfigReader& reader, const ModelConfig& config, const char* field,
                  const ShapeFieldNames& names = {});
// The range checks every family shares, after its adapter has read the config: per-head widths and
// every weight matrix's element count within bounds, the total parameter count without overflow,
// the context within int32. Each failure names config.json and the field.
void check_shape_sizes(const ConfigReader& reader, const ModelConfig& config,
                       const ShapeFieldNames& names);
// rotary_dim = head_dim * fraction; `field` names where the fraction came from, for errors.
void set_rotary_dim(const ConfigReader& reader, ModelConfig& config, const char* field,
                    float fraction);

}  // namespace tpserve::runtime
