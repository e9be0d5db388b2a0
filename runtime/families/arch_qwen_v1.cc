// Qwen v1 (QWenLMHeadModel: Qwen-7B/14B/72B, remote code modeling_qwen.py). Facts from that file:
//   - attn.c_attn is one [3 * hidden, hidden] GEMM with bias whose output is split(hidden_size)
//     into q, k, v: the concatenated [q; k; v] layout, multi-head (as many KV heads as q heads);
//   - attn.c_proj and the MLP carry a bias only when config "no_bias" is false;
//   - QWenMLP is c_proj(w1(x) * silu(w2(x))): w2 is the GATE, w1 the UP projection, and config
//     "intermediate_size" is twice the width of each (w1, w2 are [intermediate_size / 2, hidden]);
//   - ln_1 / ln_2 / ln_f are RMSNorms with "layer_norm_epsilon";
//   - RoPE is rotate_half on the first kv_channels * rotary_pct dims, base "rotary_emb_base".
// Long context (QWenModel.forward, QWenAttention.forward), both on by default in QWenConfig:
//   - use_dynamic_ntk: the rotary base becomes base * alpha^(d / (d - 2)) with
//     alpha = max(2^ceil(log2(L / seq_length) + 1) - 1, 1) (get_ntk_alpha), L the length of the
//     forward without a past, i.e. the prompt; decode steps reuse that alpha
//     (rotary_emb._ntk_alpha_cached_list): RopeScaling::kQwenNtk;
//   - use_logn_attn: once the keys outnumber seq_length, the query at position p is multiplied by
//     logn_tensor[p] = log(p + 1) / log(seq_length) when p + 1 > seq_length, else 1
//     (logn_list = [math.log(i, seq_length) if i > seq_length else 1 for i in range(1, 32768)]).
// That table covers positions 0..32766, so with either enabled tpserve serves up to 32767 positions
// (or seq_length, if longer).
#include <algorithm>

#include <fmt/format.h>

#include "runtime/families/architecture.h"

namespace tpserve::runtime {

namespace {

using enum FieldUse;

// QWenConfig's fields (configuration_qwen.py); PretrainedConfig's are shared.
constexpr FieldRule kQwenV1Fields[] = {
    {"hidden_size", kSupported, "ModelConfig::hidden_size"},
    {"num_hidden_layers", kSupported, "decoder layers"},
    {"num_attention_heads", kSupported, "heads (multi-head: as many KV heads)"},
    {"vocab_size", kSupported, "embedding / lm_head rows"},
    {"intermediate_size", kSupported, "twice the MLP width"},
    {"kv_channels", kSupported, "head_dim"},
    {"layer_norm_epsilon", kSupported, "RMSNorm epsilon"},
    {"rotary_emb_base", kSupported, "rotary base"},
    {"rotary_pct", kSupported, "fraction of each head that rotates"},
    {"seq_length", kSupported, "trained context (NTK and logn)"},
    {"max_position_embeddings", kSupported, "context length"},
    {"use_dynamic_ntk", kSupported, "RopeScaling::kQwenNtk"},
    {"use_logn_attn", kSupported, "logn query scaling"},
    {"no_bias", kSupported, "biases on c_proj and the MLP when false"},
    // QWenAttention divides the scores by sqrt(head_dim) only when scale_attn_weights is set.
    {"scale_attn_weights", kRefused, "unscaled attention scores (QWenConfig's default true is)",
     "true"},
    // use_cache_quantization stores the KV cache in int8 (modeling_qwen.py quantize_cache_v).
    {"use_cache_quantization", kRefused, "an int8 KV cache is not supported"},
    {"use_cache_kernel", kHarmless, "used only with use_cache_quantization"},
    {"emb_dropout_prob", kHarmless, "training only"},
    {"attn_dropout_prob", kHarmless, "training only"},
    {"use_flash_attn", kHarmless, "kernel choice: same math"},
    {"bf16", kHarmless, "compute dtype choice; tpserve's --dtype decides"},
    {"fp16", kHarmless, "compute dtype choice; tpserve's --dtype decides"},
    {"fp32", kHarmless, "compute dtype choice; tpserve's --dtype decides"},
    {"softmax_in_fp32", kHarmless, "precision of the softmax, which tpserve computes in float32"},
    {"onnx_safe", kHarmless, "export switch"},
};

void read_qwen_v1(const ConfigReader& reader, ModelConfig& config) {
  config.hidden_size = reader.positive_int("hidden_size");
  config.num_layers = static_cast<int>(reader.positive_int("num_hidden_layers"));
  config.num_heads = static_cast<int>(reader.positive_int("num_attention_heads"));
  config.num_kv_heads = config.num_heads;
  config.vocab_size = reader.positive_int("vocab_size");
  const int64_t both_branches = reader.positive_int("intermediate_size");
  if (both_branches % 2 != 0) {
    reader.fail("intermediate_size", fmt::format("{} is odd; Qwen v1 stores twice the MLP width",
                                                 both_branches));
  }
  config.intermediate_size = both_branches / 2;
  config.head_dim = read_head_dim(reader, config, "kv_channels");
  if (static_cast<int64_t>(config.head_dim) * config.num_heads != config.hidden_size) {
    // modeling_qwen.py splits c_attn's output at hidden_size: q/k/v widths must equal it.
    reader.fail("kv_channels", fmt::format("{} * num_attention_heads ({}) must equal hidden_size ({})",
                                           config.head_dim, config.num_heads, config.hidden_size));
  }
  config.rms_norm_eps = reader.positive_float_or("layer_norm_epsilon", 1e-6f);
  config.rope.theta = reader.positive_float_or("rotary_emb_base", 10000.0f);
  set_rotary_dim(reader, config, "rotary_pct", reader.positive_float_or("rotary_pct", 1.0f));
  const int64_t seq_length = reader.positive_int_or("seq_length", 2048);
  config.max_position_embeddings = reader.positive_int_or("max_position_embeddings", seq_length);
  // QWenConfig defaults both to true.
  const bool dynamic_ntk = reader.bool_or("use_dynamic_ntk", true);
  const bool logn = reader.bool_or("use_logn_attn", true);
  if (dynamic_ntk) {
    if (config.rope.rotary_dim <= 2) {
      reader.fail("use_dynamic_ntk", fmt::format("needs more than 2 rotary dims, got {}",
                                                 config.rope.rotary_dim));
    }
    config.rope.scaling = RopeScaling::kQwenNtk;
    config.rope.trained_context = seq_length;
  }
  if (logn) config.logn_attn_context = seq_length;
  if (dynamic_ntk || logn) {
    constexpr int64_t kLognTablePositions = 32767;  // range(1, 32768) in modeling_qwen.py
    config.max_position_embeddings = std::max(
        kLognTablePositions, std::min(config.max_position_embeddings, seq_length));
  }
  const bool bias = !reader.bool_or("no_bias", true);
  config.qkv_bias = true;  // c_attn always has one
  config.o_bias = bias;
  config.mlp_bias = bias;
}

Architecture make() {
  Architecture a;
  a.name = "QWenLMHeadModel";
  a.read_config = &read_qwen_v1;
  a.config_fields = {kPretrainedConfigFields, kQwenV1Fields};
  a.shape_fields.head_dim = "kv_channels";
  a.shape_fields.context = "seq_length";
  a.embed = "transformer.wte";
  a.final_norm = "transformer.ln_f";
  a.lm_head = "lm_head";
  a.attn_norm = "transformer.h.{}.ln_1";
  a.mlp_norm = "transformer.h.{}.ln_2";
  a.qkv.fused = "transformer.h.{}.attn.c_attn";
  a.qkv.layout = parallel::QkvLayout::kConcatenated;
  a.o = "transformer.h.{}.attn.c_proj";
  a.gate_up.gate = "transformer.h.{}.mlp.w2";  // silu(w2(x)): the gate
  a.gate_up.up = "transformer.h.{}.mlp.w1";
  a.down = "transformer.h.{}.mlp.c_proj";
  return a;
}

}  // namespace

const Architecture& qwen_v1_architecture() {
  static const Architecture architecture = make();
  return architecture;
}

}  // namespace tpserve::runtime
