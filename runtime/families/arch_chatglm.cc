// ChatGLM2 / ChatGLM3 (ChatGLMModel, remote code modeling_chatglm.py). Facts from that file:
//   - SelfAttention.__init__: query_key_value = nn.Linear(..., bias=config.add_bias_linear or
//     config.add_qkv_bias); dense (o) has bias=config.add_bias_linear;
//   - SelfAttention.forward with multi_query_attention: mixed_x_layer.split([heads * kv_channels,
//     groups * kv_channels, groups * kv_channels]), i.e. [q; k; v] with multi_query_group_num KV
//     heads (2 on ChatGLM2/3-6B, so N > 2 replicates them); without it: mixed_x_layer.view(...,
//     num_heads, 3 * kv_channels) then split_tensor_along_last_dim(3), i.e. per head [q, k, v];
//   - RotaryEmbedding(kv_channels // 2): only the first half of each head rotates, in interleaved
//     pairs (2i, 2i+1) (apply_rotary_pos_emb reshapes to [..., rot_dim / 2, 2]), with
//     inv_freq_i = 1 / (10000 * rope_ratio)^(2i / (kv_channels / 2));
//   - mlp.dense_h_to_4h is [gate; up] (swiglu: chunk(2), silu on the first), dense_4h_to_h down;
//     self_attention.dense is o; add_bias_linear puts biases on dense, dense_h_to_4h, dense_4h_to_h;
//   - pre-norm RMSNorms input_layernorm / post_attention_layernorm (layernorm_epsilon), then
//     encoder.final_layernorm; embedding.word_embeddings has padded_vocab_size rows; output_layer.
// Variants this decoder does not run (LayerNorm, post-norm residuals, no final norm, GLM-style
// original_rope=false) are refused by name.
#include <fmt/format.h>

#include "runtime/families/architecture.h"

namespace tpserve::runtime {

namespace {

void require(const ConfigReader& reader, const char* field, bool fallback, bool expected) {
  if (reader.bool_or(field, fallback) != expected) {
    reader.fail(field, fmt::format("{} is not supported (ChatGLM2/3 use {})", !expected, expected));
  }
}

void read_chatglm(const ConfigReader& reader, ModelConfig& config) {
  require(reader, "rmsnorm", true, true);
  require(reader, "apply_residual_connection_post_layernorm", false, false);
  require(reader, "post_layer_norm", true, true);
  require(reader, "original_rope", true, true);
  config.hidden_size = reader.positive_int("hidden_size");
  config.num_layers = static_cast<int>(reader.positive_int("num_layers"));
  config.num_heads = static_cast<int>(reader.positive_int("num_attention_heads"));
  const bool multi_query = reader.bool_or("multi_query_attention", false);
  config.num_kv_heads = multi_query ? static_cast<int>(reader.positive_int("multi_query_group_num"))
                                    : config.num_heads;
  config.qkv_per_head = !multi_query;
  if (config.num_heads % config.num_kv_heads != 0) {
    reader.fail("multi_query_group_num", fmt::format("{} does not divide num_attention_heads ({})",
                                                     config.num_kv_heads, config.num_heads));
  }
  config.head_dim = static_cast<int>(
      reader.positive_int_or("kv_channels", config.hidden_size / config.num_heads));
  config.intermediate_size = reader.positive_int("ffn_hidden_size");
  config.vocab_size = reader.has("padded_vocab_size") ? reader.positive_int("padded_vocab_size")
                                                      : reader.positive_int("vocab_size");
  config.rms_norm_eps = reader.positive_float_or("layernorm_epsilon", 1e-5f);
  config.max_position_embeddings = reader.positive_int_or("seq_length", 2048);
  config.rope.theta = 10000.0f * reader.positive_float_or("rope_ratio", 1.0f);
  config.rope.interleaved = true;
  set_rotary_dim(reader, config, "kv_channels", 0.5f);
  // add_bias_linear puts biases on every Linear (dense, dense_h_to_4h, dense_4h_to_h and
  // query_key_value); add_qkv_bias on query_key_value alone.
  config.o_bias = reader.bool_or("add_bias_linear", false);
  config.mlp_bias = config.o_bias;
  config.qkv_bias = config.o_bias || reader.bool_or("add_qkv_bias", false);
}

Architecture make() {
  Architecture a;
  a.name = "ChatGLMModel";
  a.read_config = &read_chatglm;
  a.embed = "transformer.embedding.word_embeddings";
  a.final_norm = "transformer.encoder.final_layernorm";
  a.lm_head = "transformer.output_layer";
  a.attn_norm = "transformer.encoder.layers.{}.input_layernorm";
  a.mlp_norm = "transformer.encoder.layers.{}.post_attention_layernorm";
  a.qkv.fused = "transformer.encoder.layers.{}.self_attention.query_key_value";
  a.qkv.layout = parallel::QkvLayout::kConcatenated;
  a.o = "transformer.encoder.layers.{}.self_attention.dense";
  a.gate_up.fused = "transformer.encoder.layers.{}.mlp.dense_h_to_4h";
  a.down = "transformer.encoder.layers.{}.mlp.dense_4h_to_h";
  // ChatGLM2/3 checkpoints ship RotaryEmbedding's inv_freq buffer (register_buffer, persistent),
  // but its forward reads only the buffer's dtype and device: forward_impl recomputes
  // theta = 1 / (10000 * rope_ratio)^(arange(0, n_elem, 2) / n_elem) from the config.
  a.unread = {"transformer.rotary_pos_emb.inv_freq"};
  return a;
}

}  // namespace

const Architecture& chatglm_architecture() {
  static const Architecture architecture = make();
  return architecture;
}

}  // namespace tpserve::runtime
