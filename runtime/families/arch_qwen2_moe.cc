// Qwen2-MoE / Qwen1.5-MoE (Qwen2MoeForCausalLM): Qwen2's attention (q/k/v biases, no o bias) and
// tensor names, with sparse MLPs. Facts from transformers' modeling_qwen2_moe.py:
//   - Qwen2MoeSparseMoeBlock: router mlp.gate [num_experts, hidden] -> softmax over experts in
//     float32 -> top num_experts_per_tok -> renormalised to sum 1 only when norm_topk_prob;
//   - each expert mlp.experts.E.{gate,up,down}_proj is a SwiGLU MLP of moe_intermediate_size;
//   - the shared expert mlp.shared_expert.{gate,up,down}_proj (shared_expert_intermediate_size)
//     is added to every token, scaled by sigmoid(mlp.shared_expert_gate(x)), a [1, hidden] linear;
//   - Qwen2MoeDecoderLayer uses a dense Qwen2MoeMLP of intermediate_size (mlp.{gate,up,down}_proj)
//     on layers in mlp_only_layers or where (layer + 1) % decoder_sparse_step != 0.
// Missing MoE fields take Qwen2MoeConfig's defaults, as transformers would.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "runtime/families/architecture.h"

namespace tpserve::runtime {

namespace {

using enum FieldUse;

// Qwen2MoeConfig's own fields (configuration_qwen2_moe.py) beyond Qwen2's.
constexpr FieldRule kQwen2MoeFields[] = {
    {"num_experts", kSupported, "experts per sparse layer"},
    {"num_experts_per_tok", kSupported, "top-k"},
    {"moe_intermediate_size", kSupported, "each expert's width"},
    {"shared_expert_intermediate_size", kSupported, "the shared expert's width"},
    {"norm_topk_prob", kSupported, "renormalise the top-k weights"},
    {"decoder_sparse_step", kSupported, "which layers are sparse"},
    {"mlp_only_layers", kSupported, "layers with a dense MLP"},
    {"qkv_bias", kSupported, "transformers 5's q/k/v bias switch"},
    {"output_router_logits", kHarmless, "training output (router loss)"},
    {"router_aux_loss_coef", kHarmless, "training loss weight"},
};

std::vector<int> mlp_only_layers(const ConfigReader& reader, int num_layers) {
  std::vector<int> layers;
  if (!reader.has("mlp_only_layers")) return layers;
  const nlohmann::json& value = reader.document()["mlp_only_layers"];
  if (!value.is_array()) reader.fail("mlp_only_layers", "expected a list of layer indices, got " + value.dump());
  for (const nlohmann::json& item : value) {
    if (!item.is_number_integer() || item.get<int64_t>() < 0 || item.get<int64_t>() >= num_layers) {
      reader.fail("mlp_only_layers", fmt::format("{} is not a layer index below num_hidden_layers ({})",
                                                 item.dump(), num_layers));
    }
    layers.push_back(item.get<int>());
  }
  return layers;
}

void read_qwen2_moe(const ConfigReader& reader, ModelConfig& config) {
  qwen2_architecture().read_config(reader, config);  // shapes, rope, q/k/v biases, sliding window
  // transformers >= 5 names the q/k/v bias switch (default on); older configs do not carry it.
  config.qkv_bias = reader.bool_or("qkv_bias", true);
  SparseMoeConfig& moe = config.moe;
  moe.num_experts = static_cast<int>(reader.non_negative_int_or("num_experts", 60));
  moe.experts_per_token = static_cast<int>(reader.positive_int_or("num_experts_per_tok", 4));
  moe.expert_intermediate_size = reader.positive_int_or("moe_intermediate_size", 1408);
  moe.shared_expert_intermediate_size = reader.positive_int_or("shared_expert_intermediate_size", 5632);
  moe.norm_topk_prob = reader.bool_or("norm_topk_prob", false);
  const int64_t sparse_step = reader.positive_int_or("decoder_sparse_step", 1);
  if (moe.num_experts > 0 && moe.experts_per_token > moe.num_experts) {
    reader.fail("num_experts_per_tok", fmt::format("{} exceeds num_experts ({})",
                                                   moe.experts_per_token, moe.num_experts));
  }
  moe.sparse_layers.assign(static_cast<size_t>(config.num_layers), false);
  for (int layer = 0; layer < config.num_layers; ++layer) {
    moe.sparse_layers[static_cast<size_t>(layer)] = moe.num_experts > 0 && (layer + 1) % sparse_step == 0;
  }
  for (int layer : mlp_only_layers(reader, config.num_layers)) {
    moe.sparse_layers[static_cast<size_t>(layer)] = false;
  }
}

Architecture make() {
  Architecture a = qwen2_architecture();  // same attention, norms, embeddings and dense-MLP names
  a.name = "Qwen2MoeForCausalLM";
  a.read_config = &read_qwen2_moe;
  a.config_fields.push_back(kQwen2MoeFields);  // after Qwen2's tables
  a.moe.router = "model.layers.{}.mlp.gate";
  a.moe.expert_gate = "model.layers.{}.mlp.experts.{}.gate_proj";
  a.moe.expert_up = "model.layers.{}.mlp.experts.{}.up_proj";
  a.moe.expert_down = "model.layers.{}.mlp.experts.{}.down_proj";
  a.moe.shared_gate = "model.layers.{}.mlp.shared_expert.gate_proj";
  a.moe.shared_up = "model.layers.{}.mlp.shared_expert.up_proj";
  a.moe.shared_down = "model.layers.{}.mlp.shared_expert.down_proj";
  a.moe.shared_expert_gate = "model.layers.{}.mlp.shared_expert_gate";
  return a;
}

}  // namespace

const Architecture& qwen2_moe_architecture() {
  static const Architecture architecture = make();
  return architecture;
}

}  // namespace tpserve::runtime
