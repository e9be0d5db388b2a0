// The sparse (mixture-of-experts) MLP of one layer on one rank: Qwen2-MoE's
// Qwen2MoeSparseMoeBlock, tensor-parallel as runtime/model/moe_plan.h slices it.
//
// One call, on every rank, for `tokens` rows of the post-attention RMSNorm output x:
//   [router; shared_expert_gate] GEMM (replicated) -> download [tokens, num_experts + 1]
//   host: softmax over experts (float32) -> top-k (ties: lowest expert index) -> optional
//         renormalisation; sigmoid of the shared gate logit
//   per expert with routed tokens: copy_rows (gather) -> gate_up GEMM -> silu_mul -> down GEMM
//         -> scatter_add_rows (out[token] += weight * expert(x)[token])
//   shared expert: gate_up GEMM -> silu_mul -> down GEMM -> scatter_add_rows with the sigmoids
// out then holds this rank's partial sum of every expert and the shared expert; the caller's one
// all-reduce completes it. Every rank computes the same routing: the router weights are replicated
// and x is the same all-reduced activation on every rank.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/ops.h"
#include "runtime/config/model_config.h"
#include "runtime/model/device_buffer.h"
#include "runtime/model/weight_plan.h"
#include "runtime/model/weights.h"

namespace tpserve::runtime {

// Bytes of the workspace SparseMoe allocates for steps of up to max_tokens rows (0 when the model
// has no sparse layer).
size_t moe_workspace_bytes(const ModelConfig& config, const RankShape& shape, int max_tokens,
                           int element_size);

// One token's routing: top-k experts (descending probability) and their weights.
struct TokenRoute {
  std::vector<int> experts;
  std::vector<float> weights;
  std::vector<float> probs;  // scratch: the softmax over every expert
};
// transformers' Qwen2MoeTopKRouter on one row of router logits: softmax in float32, the top k
// (lowest index first among equal probabilities), renormalised to sum 1 when norm_topk_prob.
void route_token(const float* logits, int num_experts, int top_k, bool norm_topk_prob,
                 TokenRoute& route);

class SparseMoe {
 public:
  SparseMoe(const ModelConfig& config, const RankShape& shape, kernels::Backend& backend,
            int max_tokens);

  // Resolves the sparse layers' weights (runtime/model/moe_plan.h names) after a load.
  void bind(const WeightStore& weights);

  // out[tokens, hidden] = this rank's partial sum of layer `layer`'s sparse MLP on x.
  void run(int layer, const void* x, int tokens, void* out);

 private:
  struct LayerWeights {
    const void* router = nullptr;  // [num_experts + 1, hidden]: router rows, then shared gate
    std::vector<LinearWeight> gate_up;
    std::vector<LinearWeight> down;
    LinearWeight shared_gate_up;
    LinearWeight shared_down;
  };

  void route(int tokens);
  void expert_mlp(const LinearWeight& gate_up, const LinearWeight& down, int64_t units,
                  const void* x, int rows, void* out);

  SparseMoeConfig moe_;
  int64_t hidden_ = 0;
  kernels::Backend& backend_;
  int max_tokens_;
  int element_size_;
  int64_t expert_units_ = 0;  // this rank's moe_intermediate units
  int64_t shared_units_ = 0;
  std::vector<LayerWeights> layers_;  // indexed by layer; empty entries for dense layers

  // Device workspace, carved from one allocation.
  DeviceBuffer workspace_;
  void* router_logits_ = nullptr;  // [max_tokens, num_experts + 1]
  void* gathered_ = nullptr;       // [max_tokens, hidden]
  void* gate_up_ = nullptr;        // [max_tokens, 2 * max(expert, shared units)]
  void* act_ = nullptr;            // [max_tokens, max(expert, shared units)]
  void* expert_out_ = nullptr;     // [max_tokens, hidden]
  int32_t* route_rows_ = nullptr;   // [max_tokens * (top_k + 1)]: per expert, then 0..tokens-1
  float* route_weights_ = nullptr;  // same layout, float32

  // Host staging, sized once.
  std::vector<float> router_logits_host_;
  std::vector<int32_t> rows_host_;
  std::vector<float> weights_host_;
  std::vector<int> expert_begin_;  // [num_experts + 1] offsets into rows_host_
  std::vector<int> expert_fill_;
  std::vector<int> routed_experts_;  // [max_tokens * top_k], token-major
  std::vector<float> routed_weights_;
  TokenRoute token_route_;
};

}  // namespace tpserve::runtime
