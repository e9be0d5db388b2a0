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

using enum FieldUse;

// ChatGLMConfig's fields (configuration_chatglm.py); PretrainedConfig's are shared.
// add_bias_linear, multi_query_attention and rope_ratio keep the reading below; the qkv-bias rule,
// the per-head query_key_value layout without MQA and rope_ratio's check past the trained length
// are the families branch's work (issue 12).
constexpr FieldRule kChatGlmFields[] = {
    {"num_layers", kSupported, "decoder layers"},
    {"hidden_size", kSupported, "ModelConfig::hidden_size"},
    {"ffn_hidden_size", kSupported, "the MLP width"},
    {"kv_channels", kSupported, "head_dim"},
    {"num_attention_heads", kSupported, "query heads"},
    {"multi_query_attention", kSupported, "KV groups (layout without it: families branch)"},
    {"multi_query_group_num", kSupported, "KV heads with multi_query_attention"},
    {"padded_vocab_size", kSupported, "embedding / output_layer rows"},
    {"vocab_size", kSupported, "rows when padded_vocab_size is absent"},
    {"seq_length", kSupported, "context length"},
    {"layernorm_epsilon", kSupported, "RMSNorm epsilon"},
    {"rope_ratio", kSupported, "rotary base 10000 * rope_ratio (checked by the families branch)"},
    {"add_qkv_bias", kSupported, "bias on query_key_value"},
    {"add_bias_linear", kSupported, "biases on dense and the MLP (qkv rule: families branch)"},
    {"rmsnorm", kRefused, "LayerNorm variants are not supported (ChatGLM2/3 use RMSNorm: true)", "true"},
    {"apply_residual_connection_post_layernorm", kRefused,
     "post-norm residuals are not supported (ChatGLM2/3 use false)"},
    {"post_layer_norm", kRefused, "a model without a final norm is not supported (ChatGLM2/3 use true)",
     "true"},
    {"original_rope", kRefused, "GLM-style 2-D rope is not supported (ChatGLM2/3 use true)", "true"},
    // quantization_bit: cpm_kernels int4/int8 weights in place of the float ones.
    {"quantization_bit", kRefused, "quantized ChatGLM weights are not supported yet"},
    // pre_seq_len: a P-Tuning v2 prefix encoder prepends trained keys/values to every layer.
    {"pre_seq_len", kRefused, "P-Tuning v2 prefixes are not supported"},
    {"prefix_projection", kHarmless, "used only with pre_seq_len"},
    {"hidden_dropout", kHarmless, "training only"},
    {"attention_dropout", kHarmless, "training only"},
    {"classifier_dropout", kHarmless, "classification head only"},
    {"bias_dropout_fusion", kHarmless, "training kernel choice"},
    // CoreAttention divides q by layer_number and multiplies the scores back before the softmax.
    {"apply_query_key_layer_scaling", kHarmless, "scaled and unscaled again: same math"},
    {"attention_softmax_in_fp32", kHarmless, "precision; tpserve's softmax is float32"},
    {"fp32_residual_connection", kHarmless, "precision of the residual stream"},
};

ShapeFieldNames chatglm_shape_fields() {
  ShapeFieldNames names;
  names.intermediate_size = "ffn_hidden_size";
  names.vocab_size = "padded_vocab_size";
  names.num_layers = "num_layers";
  names.head_dim = "kv_channels";
  names.context = "seq_length";
  return names;
}

void read_chatglm(const ConfigReader& reader, ModelConfig& config) {
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
  config.head_dim = read_head_dim(reader, config, "kv_channels", chatglm_shape_fields());
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
  a.config_fields = {kPretrainedConfigFields, kChatGlmFields};
  a.shape_fields = chatglm_shape_fields();
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
