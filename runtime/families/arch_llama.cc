// LLaMA (LlamaForCausalLM) and Qwen2 / Qwen2.5 (Qwen2ForCausalLM): the same decoder and the same
// tensor names; Qwen2 always has q/k/v biases (and none on o_proj), LLaMA has them only with
// attention_bias, which also puts a bias on o_proj.
#include <nlohmann/json.hpp>

#include "runtime/families/architecture.h"

namespace tpserve::runtime {

namespace {

using enum FieldUse;

// LlamaConfig's own fields (configuration_llama.py) beyond the shared shape fields.
constexpr FieldRule kLlamaFields[] = {
    {"attention_bias", kSupported, "biases on q/k/v and o_proj"},
    {"mlp_bias", kSupported, "biases on gate/up/down"},
    // LlamaMLP / LlamaAttention with pretraining_tp > 1 slice each matmul and sum the slices:
    // the same product.
    {"pretraining_tp", kHarmless, "sliced matmuls: same math"},
};

// Qwen2Config's own fields (configuration_qwen2.py); q/k/v always carry a bias, o_proj none.
constexpr FieldRule kQwen2Fields[] = {
    // Sliding-window attention changes which keys a query sees; Qwen2/2.5 ship with it off.
    {"use_sliding_window", kRefused, "sliding-window attention is not supported yet"},
    {"sliding_window", kHarmless, "used only with use_sliding_window"},
    {"max_window_layers", kHarmless, "used only with use_sliding_window"},
    {"layer_types", kSupported, "transformers 5's per-layer attention kind: full_attention only"},
};

Architecture llama_like(std::string_view name,
                        void (*parse)(const ConfigReader&, ModelConfig&), FieldTable own_fields) {
  Architecture a;
  a.name = name;
  a.read_config = parse;
  a.config_fields = {kPretrainedConfigFields, kLlamaStyleFields, own_fields};
  a.embed = "model.embed_tokens";
  a.final_norm = "model.norm";
  a.lm_head = "lm_head";
  a.attn_norm = "model.layers.{}.input_layernorm";
  a.mlp_norm = "model.layers.{}.post_attention_layernorm";
  a.qkv.q = "model.layers.{}.self_attn.q_proj";
  a.qkv.k = "model.layers.{}.self_attn.k_proj";
  a.qkv.v = "model.layers.{}.self_attn.v_proj";
  a.o = "model.layers.{}.self_attn.o_proj";
  a.gate_up.gate = "model.layers.{}.mlp.gate_proj";
  a.gate_up.up = "model.layers.{}.mlp.up_proj";
  a.down = "model.layers.{}.mlp.down_proj";
  // Checkpoints saved before transformers 4.31 (e.g. the Llama-2 *-hf conversions) carry each
  // layer's rotary inv_freq buffer. transformers' own rotary (LlamaRotaryEmbedding,
  // Qwen2RotaryEmbedding; Qwen2-MoE copies this adapter) computes inv_freq from config.json in
  // __init__ into a persistent=False buffer, so the loaded copy never reaches its forward.
  a.unread = {"model.layers.{}.self_attn.rotary_emb.inv_freq"};
  return a;
}

void parse_llama(const ConfigReader& reader, ModelConfig& config) {
  read_llama_style_fields(reader, config);
  config.qkv_bias = reader.bool_or("attention_bias", false);
  config.o_bias = config.qkv_bias;
  config.mlp_bias = reader.bool_or("mlp_bias", false);
}

void parse_qwen2(const ConfigReader& reader, ModelConfig& config) {
  read_llama_style_fields(reader, config);
  config.qkv_bias = true;
  config.o_bias = false;
  config.mlp_bias = false;
  if (reader.has("layer_types")) {
    const nlohmann::json& kinds = reader.document()["layer_types"];
    if (!kinds.is_array()) reader.fail("layer_types", "expected a list, got " + kinds.dump());
    for (const nlohmann::json& kind : kinds) {
      if (kind != "full_attention") {
        reader.fail("layer_types", kind.dump() + " is not supported (full_attention is)");
      }
    }
  }
}

}  // namespace

const Architecture& llama_architecture() {
  static const Architecture architecture = llama_like("LlamaForCausalLM", &parse_llama, kLlamaFields);
  return architecture;
}

const Architecture& qwen2_architecture() {
  static const Architecture architecture = llama_like("Qwen2ForCausalLM", &parse_qwen2, kQwen2Fields);
  return architecture;
}

}  // namespace tpserve::runtime
