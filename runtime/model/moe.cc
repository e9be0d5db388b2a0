#include "runtime/model/moe.h"

#include <algorithm>
#include <cmath>

#include "common/check.h"
#include "runtime/model/moe_plan.h"

namespace tpserve::runtime {

namespace {

constexpr size_t kAlign = 256;  // every workspace piece starts 256-byte aligned (vector loads)

size_t aligned(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// The workspace pieces in allocation order; moe_workspace_bytes and the constructor share it.
struct Pieces {
  size_t logits, gathered, gate_up, act, expert_out, route_rows, route_weights;
  size_t total() const {
    return aligned(logits) + aligned(gathered) + aligned(gate_up) + aligned(act) +
           aligned(expert_out) + aligned(route_rows) + aligned(route_weights);
  }
};

Pieces pieces(const ModelConfig& config, const RankShape& shape, int max_tokens, int element_size) {
  const auto rows = static_cast<size_t>(max_tokens);
  const auto e = static_cast<size_t>(element_size);
  const auto hidden = static_cast<size_t>(config.hidden_size);
  const auto units = static_cast<size_t>(
      std::max(shape.expert_intermediate.size(), shape.shared_intermediate.size()));
  const size_t routes = rows * static_cast<size_t>(config.moe.experts_per_token + 1);
  return {rows * static_cast<size_t>(config.moe.num_experts + 1) * e,
          rows * hidden * e,
          rows * 2 * units * e,
          rows * units * e,
          rows * hidden * e,
          routes * sizeof(int32_t),
          routes * sizeof(float)};
}

}  // namespace

size_t moe_workspace_bytes(const ModelConfig& config, const RankShape& shape, int max_tokens,
                           int element_size) {
  if (!config.moe.any_sparse()) return 0;
  return pieces(config, shape, max_tokens, element_size).total();
}

void route_token(const float* logits, int num_experts, int top_k, bool norm_topk_prob,
                 TokenRoute& route) {
  // Softmax in float32, max-subtracted, as torch.softmax(dtype=torch.float).
  std::vector<float>& probs = route.probs;
  probs.resize(static_cast<size_t>(num_experts));
  float max_logit = logits[0];
  for (int e = 1; e < num_experts; ++e) max_logit = std::max(max_logit, logits[e]);
  float sum = 0.0f;
  for (int e = 0; e < num_experts; ++e) {
    probs[e] = std::exp(logits[e] - max_logit);
    sum += probs[e];
  }
  for (int e = 0; e < num_experts; ++e) probs[e] /= sum;
  // Top-k by repeated selection (k is small): only a strictly larger probability displaces the
  // best so far, so among equal ones the lowest expert index is taken first, on every rank alike.
  route.experts.clear();
  route.weights.clear();
  float total = 0.0f;
  for (int k = 0; k < top_k; ++k) {
    int best = -1;
    for (int e = 0; e < num_experts; ++e) {
      if (probs[e] < 0.0f) continue;  // already taken
      if (best < 0 || probs[e] > probs[best]) best = e;
    }
    route.experts.push_back(best);
    route.weights.push_back(probs[best]);
    total += probs[best];
    probs[best] = -1.0f;
  }
  if (norm_topk_prob) {
    for (float& weight : route.weights) weight /= total;
  }
}

SparseMoe::SparseMoe(const ModelConfig& config, const RankShape& shape, kernels::Backend& backend,
                     int max_tokens)
    : moe_(config.moe), hidden_(config.hidden_size), backend_(backend), max_tokens_(max_tokens),
      element_size_(dtype_size(backend.compute_dtype())),
      expert_units_(shape.expert_intermediate.size()), shared_units_(shape.shared_intermediate.size()) {
  if (!moe_.any_sparse()) return;
  const Pieces p = pieces(config, shape, max_tokens, element_size_);
  workspace_ = DeviceBuffer(backend_, p.total());
  auto* cursor = static_cast<char*>(workspace_.data());
  const auto take = [&](size_t bytes) {
    void* piece = cursor;
    cursor += aligned(bytes);
    return piece;
  };
  router_logits_ = take(p.logits);
  gathered_ = take(p.gathered);
  gate_up_ = take(p.gate_up);
  act_ = take(p.act);
  expert_out_ = take(p.expert_out);
  route_rows_ = static_cast<int32_t*>(take(p.route_rows));
  route_weights_ = static_cast<float*>(take(p.route_weights));
  const auto rows = static_cast<size_t>(max_tokens);
  router_logits_host_.resize(rows * static_cast<size_t>(moe_.num_experts + 1));
  const size_t routes = rows * static_cast<size_t>(moe_.experts_per_token + 1);
  rows_host_.resize(routes);
  weights_host_.resize(routes);
  expert_begin_.resize(static_cast<size_t>(moe_.num_experts) + 1);
  expert_fill_.resize(static_cast<size_t>(moe_.num_experts));
  routed_experts_.resize(rows * static_cast<size_t>(moe_.experts_per_token));
  routed_weights_.resize(rows * static_cast<size_t>(moe_.experts_per_token));
}

void SparseMoe::bind(const WeightStore& weights) {
  layers_.assign(moe_.sparse_layers.size(), LayerWeights{});
  for (int layer = 0; layer < static_cast<int>(layers_.size()); ++layer) {
    if (!moe_.sparse(layer)) continue;
    LayerWeights& w = layers_[static_cast<size_t>(layer)];
    w.router = weights.get(layer_weight(layer, "router"));
    for (int e = 0; e < moe_.num_experts; ++e) {
      w.gate_up.push_back(weights.get_linear(expert_weight(layer, e, "gate_up")));
      w.down.push_back(weights.get_linear(expert_weight(layer, e, "down")));
    }
    w.shared_gate_up = weights.get_linear(layer_weight(layer, "shared_gate_up"));
    w.shared_down = weights.get_linear(layer_weight(layer, "shared_down"));
  }
}

// Host side of the routing: fills rows_host_ / weights_host_ with each expert's tokens (grouped by
// expert in expert order, offsets in expert_begin_), then every token with its shared-expert
// sigmoid.
void SparseMoe::route(int tokens) {
  const int experts = moe_.num_experts;
  const int top_k = moe_.experts_per_token;
  const size_t stride = static_cast<size_t>(experts + 1);
  const size_t routed = static_cast<size_t>(tokens) * static_cast<size_t>(top_k);
  std::fill(expert_begin_.begin(), expert_begin_.end(), 0);
  for (int t = 0; t < tokens; ++t) {
    route_token(router_logits_host_.data() + static_cast<size_t>(t) * stride, experts, top_k,
                moe_.norm_topk_prob, token_route_);
    for (int k = 0; k < top_k; ++k) {
      const size_t i = static_cast<size_t>(t) * static_cast<size_t>(top_k) + static_cast<size_t>(k);
      routed_experts_[i] = token_route_.experts[static_cast<size_t>(k)];
      routed_weights_[i] = token_route_.weights[static_cast<size_t>(k)];
      ++expert_begin_[static_cast<size_t>(routed_experts_[i]) + 1];
    }
  }
  for (int e = 0; e < experts; ++e) expert_begin_[e + 1] += expert_begin_[e];
  std::copy(expert_begin_.begin(), expert_begin_.end() - 1, expert_fill_.begin());
  for (size_t i = 0; i < routed; ++i) {
    const int slot = expert_fill_[static_cast<size_t>(routed_experts_[i])]++;
    rows_host_[static_cast<size_t>(slot)] = static_cast<int32_t>(i / static_cast<size_t>(top_k));
    weights_host_[static_cast<size_t>(slot)] = routed_weights_[i];
  }
  // The shared expert: every token, scaled by sigmoid(x . shared_expert_gate) (logit column E).
  for (int t = 0; t < tokens; ++t) {
    const float gate_logit =
        router_logits_host_[static_cast<size_t>(t) * stride + static_cast<size_t>(experts)];
    rows_host_[routed + static_cast<size_t>(t)] = t;
    weights_host_[routed + static_cast<size_t>(t)] = 1.0f / (1.0f + std::exp(-gate_logit));
  }
}

void SparseMoe::expert_mlp(const LinearWeight& gate_up, const LinearWeight& down, int64_t units,
                           const void* x, int rows, void* out) {
  run_linear(backend_, x, gate_up, nullptr, rows, 2 * units, hidden_, gate_up_);
  backend_.silu_mul(gate_up_, rows, units, act_);
  run_linear(backend_, act_, down, nullptr, rows, hidden_, units, out);
}

void SparseMoe::run(int layer, const void* x, int tokens, void* out) {
  TPS_CHECK(moe_.sparse(layer) && static_cast<size_t>(layer) < layers_.size(),
            "layer {} is not a bound sparse layer", layer);
  TPS_CHECK(tokens > 0 && tokens <= max_tokens_, "{} tokens (max {})", tokens, max_tokens_);
  const LayerWeights& w = layers_[static_cast<size_t>(layer)];
  const int experts = moe_.num_experts;
  const int64_t logit_cols = experts + 1;

  backend_.linear(x, w.router, nullptr, tokens, logit_cols, hidden_, router_logits_);
  backend_.download_f32(router_logits_host_.data(), router_logits_, tokens * logit_cols);
  route(tokens);
  const size_t routes = static_cast<size_t>(tokens) * static_cast<size_t>(moe_.experts_per_token + 1);
  backend_.copy_to_device(route_rows_, rows_host_.data(), routes * sizeof(int32_t));
  backend_.copy_to_device(route_weights_, weights_host_.data(), routes * sizeof(float));

  // transformers' order: the routed experts summed from zero in expert order, then the shared
  // expert's gated output added.
  backend_.fill_zero(out, static_cast<size_t>(tokens) * static_cast<size_t>(hidden_) *
                              static_cast<size_t>(element_size_));
  for (int e = 0; e < experts; ++e) {
    const int begin = expert_begin_[static_cast<size_t>(e)];
    const int rows = expert_begin_[static_cast<size_t>(e) + 1] - begin;
    if (rows == 0) continue;
    backend_.copy_rows(x, route_rows_ + begin, rows, hidden_, gathered_);
    expert_mlp(w.gate_up[static_cast<size_t>(e)], w.down[static_cast<size_t>(e)], expert_units_,
               gathered_, rows, expert_out_);
    backend_.scatter_add_rows(expert_out_, route_rows_ + begin, route_weights_ + begin, rows,
                              hidden_, out);
  }
  const int routed = tokens * moe_.experts_per_token;
  expert_mlp(w.shared_gate_up, w.shared_down, shared_units_, x, tokens, expert_out_);
  backend_.scatter_add_rows(expert_out_, route_rows_ + routed, route_weights_ + routed, tokens,
                            hidden_, out);
}

}  // namespace tpserve::runtime
