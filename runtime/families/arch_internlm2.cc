// InternLM2 (InternLM2ForCausalLM, remote code modeling_internlm2.py). Facts from that file:
//   - attention.wqkv is one GEMM whose rows are "(h gs d)" with gs = 2 + q heads per KV head:
//     per KV group, its q heads, then its k head, then its v head (QkvLayout::kGroupInterleaved;
//     parallel/shard_plan.cc reads each rank's rows straight from that layout, no re-ordered copy);
//   - attention.wo; config "bias" puts a bias on both wqkv and wo;
//   - feed_forward is w2(silu(w1(x)) * w3(x)): w1 gate, w3 up, w2 down;
//   - attention_norm / ffn_norm / model.norm are RMSNorms (rms_norm_eps); tok_embeddings, output;
//   - RoPE is rotate_half over the whole head, rope_theta; rope_scaling "linear" divides positions
//     by the factor, and "dynamic" (InternLM2DynamicNTKScalingRotaryEmbedding) recomputes, for a
//     forward whose kv length L exceeds max_position_embeddings M, base * (factor * L / M -
//     (factor - 1))^(d / (d - 2)): transformers' "dynamic" formula, so parse_rope maps it to
//     RopeScaling::kDynamic (context up to M * factor).
// The shape fields use LLaMA's names.
#include "runtime/families/architecture.h"

namespace tpserve::runtime {

namespace {

using enum FieldUse;

// InternLM2Config's own fields (configuration_internlm2.py) beyond the shared shape fields.
constexpr FieldRule kInternLM2Fields[] = {
    {"bias", kSupported, "biases on wqkv and wo"},
    {"pretraining_tp", kHarmless, "sliced matmuls: same math"},
};

void read_internlm2(const ConfigReader& reader, ModelConfig& config) {
  read_llama_style_fields(reader, config);
  const bool bias = reader.bool_or("bias", true);  // InternLM2Config's default
  config.qkv_bias = bias;
  config.o_bias = bias;
  config.mlp_bias = false;
  // modeling_internlm2.py's _init_rope builds "linear" and "dynamic" rotaries only (any other type
  // raises), so the LLaMA-style reader's other scalings are not InternLM2's.
  if (config.rope.scaling == RopeScaling::kLlama3 || config.rope.scaling == RopeScaling::kYarn) {
    reader.fail("rope_scaling",
                std::string(config.rope.scaling == RopeScaling::kYarn ? "'yarn'" : "'llama3'") +
                    " is not supported (InternLM2's modeling code knows linear and dynamic)");
  }
}

Architecture make() {
  Architecture a;
  a.name = "InternLM2ForCausalLM";
  a.read_config = &read_internlm2;
  a.config_fields = {kPretrainedConfigFields, kLlamaStyleFields, kInternLM2Fields};
  a.embed = "model.tok_embeddings";
  a.final_norm = "model.norm";
  a.lm_head = "output";
  a.attn_norm = "model.layers.{}.attention_norm";
  a.mlp_norm = "model.layers.{}.ffn_norm";
  a.qkv.fused = "model.layers.{}.attention.wqkv";
  a.qkv.layout = parallel::QkvLayout::kGroupInterleaved;
  a.o = "model.layers.{}.attention.wo";
  a.gate_up.gate = "model.layers.{}.feed_forward.w1";
  a.gate_up.up = "model.layers.{}.feed_forward.w3";
  a.down = "model.layers.{}.feed_forward.w2";
  return a;
}

}  // namespace

const Architecture& internlm2_architecture() {
  static const Architecture architecture = make();
  return architecture;
}

}  // namespace tpserve::runtime
