// Mixture-of-experts hyper-parameters of the canonical decoder (Qwen2-MoE: transformers'
// Qwen2MoeConfig / modeling_qwen2_moe.py). A dense model has num_experts == 0.
#pragma once

#include <cstdint>
#include <vector>

namespace tpserve::runtime {

struct SparseMoeConfig {
  int num_experts = 0;           // 0: every layer is a dense MLP
  int experts_per_token = 0;     // num_experts_per_tok (top-k)
  int64_t expert_intermediate_size = 0;         // moe_intermediate_size
  int64_t shared_expert_intermediate_size = 0;  // the always-on shared expert's width
  bool norm_topk_prob = false;   // renormalise the top-k softmax weights to sum 1
  // Per layer: true where the MLP is sparse. transformers' Qwen2MoeDecoderLayer: a layer is sparse
  // when it is not in mlp_only_layers, num_experts > 0 and (layer + 1) % decoder_sparse_step == 0;
  // the others use a dense MLP of intermediate_size.
  std::vector<bool> sparse_layers;

  bool any_sparse() const {
    for (bool sparse : sparse_layers) {
      if (sparse) return true;
    }
    return false;
  }
  bool sparse(int layer) const {
    return layer >= 0 && static_cast<size_t>(layer) < sparse_layers.size() &&
           sparse_layers[static_cast<size_t>(layer)];
  }
};

}  // namespace tpserve::runtime
