#include "runtime/model/moe_plan.h"

#include <fmt/format.h>

#include "common/error.h"

namespace tpserve::runtime {

using parallel::Range;
using parallel::ShardKind;

namespace {

// An empty expert slice would leave a rank with zero-width expert GEMMs; refuse that N instead.
void check_units(int64_t units, int64_t align, const char* field, int tp_size) {
  const int64_t blocks = (units + align - 1) / align;
  if (blocks < tp_size) {
    raise(ErrorCode::kInvalidArgument,
          "tensor-parallel size {} exceeds the {} units of {}: every rank needs at least one "
          "(valid sizes are at most {})",
          tp_size, units, field, blocks);
  }
}

std::string name_of(const std::string& pattern, int layer, const char* suffix) {
  return fmt::format(fmt::runtime(pattern), layer) + suffix;
}

std::string expert_name_of(const std::string& pattern, int layer, int expert) {
  return fmt::format(fmt::runtime(pattern), layer, expert) + ".weight";
}

SourceBlock block(std::string tensor, int64_t full_rows, int64_t full_cols, const char* meaning,
                  Range rows, Range cols) {
  return {std::move(tensor), full_rows, full_cols, meaning, rows, cols};
}

// [gate rows; up rows] of this rank's units, as the dense MLP's fused gate_up.
WeightShard gate_up(std::string name, const std::string& gate, const std::string& up, int64_t width,
                    int64_t hidden, const char* meaning, Range units) {
  WeightShard w;
  w.name = std::move(name);
  w.kind = ShardKind::kColumn;
  w.rows = 2 * units.size();
  w.cols = hidden;
  w.blocks.push_back(block(gate, width, hidden, meaning, units, {0, hidden}));
  w.blocks.push_back(block(up, width, hidden, meaning, units, {0, hidden}));
  w.linear = true;
  return w;
}

WeightShard down(std::string name, const std::string& tensor, int64_t width, int64_t hidden,
                 const char* meaning, Range units) {
  WeightShard w;
  w.name = std::move(name);
  w.kind = ShardKind::kRow;
  w.rows = hidden;
  w.cols = units.size();
  w.blocks.push_back(block(tensor, hidden, width, meaning, {0, hidden}, units));
  w.linear = true;
  return w;
}

}  // namespace

MoeShard moe_shard(const ModelConfig& config, int tp_size, int rank) {
  MoeShard shard;
  if (!config.moe.any_sparse()) return shard;
  const int64_t align = intermediate_align(config);
  check_units(config.moe.expert_intermediate_size, align, "moe_intermediate_size", tp_size);
  check_units(config.moe.shared_expert_intermediate_size, align, "shared_expert_intermediate_size",
              tp_size);
  shard.expert = parallel::split_range(config.moe.expert_intermediate_size, tp_size, rank, align);
  shard.shared =
      parallel::split_range(config.moe.shared_expert_intermediate_size, tp_size, rank, align);
  return shard;
}

std::string expert_weight(int layer, int expert, const char* part) {
  return fmt::format("layers.{}.experts.{}.{}", layer, expert, part);
}

std::vector<WeightShard> plan_moe_layer(const ModelConfig& c, const Architecture& a,
                                        const RankShape& s, int layer) {
  const SparseMoeConfig& moe = c.moe;
  const MoeSource& n = a.moe;
  const int64_t hidden = c.hidden_size;
  std::vector<WeightShard> shards;

  // The router and the shared expert's gate, stacked: one replicated [num_experts + 1, hidden]
  // GEMM gives every token's expert logits and its shared-expert gate logit.
  WeightShard& router = shards.emplace_back();
  router.name = layer_weight(layer, "router");
  router.kind = ShardKind::kReplicated;
  router.rows = moe.num_experts + 1;
  router.cols = hidden;
  router.blocks.push_back(block(name_of(n.router, layer, ".weight"), moe.num_experts, hidden,
                                "[num_experts, hidden_size]", {0, moe.num_experts}, {0, hidden}));
  router.blocks.push_back(block(name_of(n.shared_expert_gate, layer, ".weight"), 1, hidden,
                                "[1, hidden_size]", {0, 1}, {0, hidden}));

  const int64_t width = moe.expert_intermediate_size;
  for (int e = 0; e < moe.num_experts; ++e) {
    shards.push_back(gate_up(expert_weight(layer, e, "gate_up"),
                             expert_name_of(n.expert_gate, layer, e),
                             expert_name_of(n.expert_up, layer, e), width, hidden,
                             "[moe_intermediate_size, hidden_size]", s.expert_intermediate));
    shards.push_back(down(expert_weight(layer, e, "down"), expert_name_of(n.expert_down, layer, e),
                          width, hidden, "[hidden_size, moe_intermediate_size]",
                          s.expert_intermediate));
  }
  const int64_t shared = moe.shared_expert_intermediate_size;
  shards.push_back(gate_up(layer_weight(layer, "shared_gate_up"),
                           name_of(n.shared_gate, layer, ".weight"),
                           name_of(n.shared_up, layer, ".weight"), shared, hidden,
                           "[shared_expert_intermediate_size, hidden_size]", s.shared_intermediate));
  shards.push_back(down(layer_weight(layer, "shared_down"), name_of(n.shared_down, layer, ".weight"),
                        shared, hidden, "[hidden_size, shared_expert_intermediate_size]",
                        s.shared_intermediate));
  return shards;
}

}  // namespace tpserve::runtime
