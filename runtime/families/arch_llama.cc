// LLaMA (LlamaForCausalLM) and Qwen2 / Qwen2.5 (Qwen2ForCausalLM): the same decoder and the same
// tensor names; Qwen2 always has q/k/v biases (and none on o_proj), LLaMA has them only with
// attention_bias, which also puts a bias on o_proj.
#include "runtime/families/architecture.h"

namespace tpserve::runtime {

namespace {

Architecture llama_like(std::string_view name,
                        void (*parse)(const ConfigReader&, ModelConfig&)) {
  Architecture a;
  a.name = name;
  a.read_config = parse;
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
  // Sliding-window attention changes which keys a query sees; Qwen2/2.5 checkpoints ship with it
  // off. Refuse rather than silently attend to the full context.
  if (reader.bool_or("use_sliding_window", false)) {
    reader.fail("use_sliding_window", "sliding-window attention is not supported yet");
  }
}

}  // namespace

const Architecture& llama_architecture() {
  static const Architecture architecture = llama_like("LlamaForCausalLM", &parse_llama);
  return architecture;
}

const Architecture& qwen2_architecture() {
  static const Architecture architecture = llama_like("Qwen2ForCausalLM", &parse_qwen2);
  return architecture;
}

}  // namespace tpserve::runtime
