// The sharding table of a sparse (mixture-of-experts) MLP layer. gpt-fast style, per linear:
//
//   weight                                  kind        slices
//   router [num_experts; shared_expert_gate] replicated nothing: every rank routes identically
//   experts.E.gate_up  [gate_E; up_E]       column      this rank's moe_intermediate units
//   experts.E.down                          row         the same units (partial sums)
//   shared_gate_up     [gate; up]           column      this rank's shared_expert units
//   shared_down                             row         the same units (partial sums)
//
// Each rank holds a slice of EVERY expert (tensor-parallel experts, not expert-parallel), so the
// routed tokens never move between ranks and the partial sums of all experts and the shared expert
// meet in one all-reduce per layer. The shared expert's sigmoid gate is linear per token, so it
// commutes with that sum.
#pragma once

#include <string>
#include <vector>

#include "parallel/shard_plan.h"
#include "runtime/config/model_config.h"
#include "runtime/families/architecture.h"
#include "runtime/model/weight_plan.h"

namespace tpserve::runtime {

// This rank's units of each expert and of the shared expert: split_range, as the dense MLP. Throws
// (kInvalidArgument, naming the numbers) when tp_size exceeds moe_intermediate_size or
// shared_expert_intermediate_size, which would leave a rank with no units.
struct MoeShard {
  parallel::Range expert;
  parallel::Range shared;
};
MoeShard moe_shard(const ModelConfig& config, int tp_size, int rank);

// The shards of layer `layer`'s sparse MLP (canonical names below), for plan_weights.
std::vector<WeightShard> plan_moe_layer(const ModelConfig& config, const Architecture& architecture,
                                        const RankShape& shape, int layer);

// "layers.<layer>.experts.<expert>.<part>"
std::string expert_weight(int layer, int expert, const char* part);

}  // namespace tpserve::runtime
