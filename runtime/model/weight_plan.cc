#include "runtime/model/weight_plan.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <numeric>

#include "common/error.h"
#include "runtime/model/quantized_load.h"

#include "runtime/model/moe_plan.h"

namespace tpserve::runtime {

using parallel::Range;
using parallel::ShardKind;

namespace {

std::string layer_name(const std::string& pattern, int layer, const char* suffix) {
  return fmt::format(fmt::runtime(pattern), layer) + suffix;
}

// Builds the shards of one model; each add_* line reads like a row of the sharding table.
class Planner {
 public:
  Planner(const ModelConfig& config, const RankShape& shape) : c_(config), s_(shape) {}

  std::vector<WeightShard> take() { return std::move(shards_); }
  void append(WeightShard w) { shards_.push_back(std::move(w)); }

  // Whole tensor on every rank (norms, row-parallel biases).
  void replicated(std::string name, std::string tensor, int64_t rows, const char* meaning) {
    WeightShard& w = add(std::move(name), ShardKind::kReplicated, rows, 1);
    w.blocks.push_back({std::move(tensor), rows, 1, meaning, {0, rows}, {0, 1}});
  }

  // Rows (output units) of one or more source tensors, stacked in the given order.
  WeightShard& column(std::string name, int64_t cols) {
    return add(std::move(name), ShardKind::kColumn, 0, cols);
  }
  void take_rows(WeightShard& w, std::string tensor, int64_t full_rows, const char* meaning,
                 Range rows) {
    w.blocks.push_back({std::move(tensor), full_rows, w.cols, meaning, rows, {0, w.cols}});
    w.rows += rows.size();
  }

  // Input columns of a [rows, full_cols] tensor (partial sums, all-reduced after the GEMM).
  void row(std::string name, std::string tensor, int64_t rows, int64_t full_cols,
           const char* meaning, Range cols) {
    WeightShard& w = add(std::move(name), ShardKind::kRow, rows, cols.size());
    w.linear = true;
    w.blocks.push_back({std::move(tensor), rows, full_cols, meaning, {0, rows}, cols});
  }

  // Vocabulary rows, padded to the same count on every rank. `linear`: an lm_head the checkpoint
  // stores packed (GGUF), loaded into the quantized representation.
  void vocab(std::string name, std::string tensor, bool linear = false) {
    WeightShard& w = add(std::move(name), ShardKind::kVocab, s_.vocab.padded_rows, c_.hidden_size);
    w.linear = linear;
    if (s_.vocab.end > s_.vocab.begin) {
      w.blocks.push_back({std::move(tensor), c_.vocab_size, c_.hidden_size,
                          "[vocab_size, hidden_size]", {s_.vocab.begin, s_.vocab.end},
                          {0, c_.hidden_size}});
    }
  }

 private:
  WeightShard& add(std::string name, ShardKind kind, int64_t rows, int64_t cols) {
    WeightShard& w = shards_.emplace_back();
    w.name = std::move(name);
    w.kind = kind;
    w.rows = rows;
    w.cols = cols;
    return w;
  }

  const ModelConfig& c_;
  const RankShape& s_;
  std::vector<WeightShard> shards_;
};

void plan_qkv(Planner& p, const ModelConfig& c, const Architecture& a, const RankShape& s,
              int layer, const char* suffix, int64_t cols) {
  const int d = c.head_dim;
  WeightShard& w = p.column(layer_weight(layer, cols == 1 ? "qkv_bias" : "qkv"), cols);
  w.linear = cols != 1;
  if (!a.qkv.fused.empty()) {
    const int64_t full = static_cast<int64_t>(c.num_heads + 2 * c.num_kv_heads) * d;
    const std::string tensor = layer_name(a.qkv.fused, layer, suffix);
    const parallel::QkvLayout layout =
        c.qkv_per_head ? parallel::QkvLayout::kPerHead : a.qkv.layout;
    for (const Range& rows :
         parallel::fused_qkv_rows(layout, c.num_heads, c.num_kv_heads, d, s.heads)) {
      p.take_rows(w, tensor, full, "[(num_attention_heads + 2 * num_key_value_heads) * head_dim, ...]",
                  rows);
    }
    return;
  }
  const int64_t q_full = static_cast<int64_t>(c.num_heads) * d;
  const int64_t kv_full = static_cast<int64_t>(c.num_kv_heads) * d;
  p.take_rows(w, layer_name(a.qkv.q, layer, suffix), q_full, "[num_attention_heads * head_dim, ...]",
              parallel::q_rows(s.heads, d));
  p.take_rows(w, layer_name(a.qkv.k, layer, suffix), kv_full,
              "[num_key_value_heads * head_dim, ...]", parallel::kv_rows(s.heads, d));
  p.take_rows(w, layer_name(a.qkv.v, layer, suffix), kv_full,
              "[num_key_value_heads * head_dim, ...]", parallel::kv_rows(s.heads, d));
}

void plan_gate_up(Planner& p, const ModelConfig& c, const Architecture& a, const RankShape& s,
                  int layer, const char* suffix, int64_t cols) {
  WeightShard& w = p.column(layer_weight(layer, cols == 1 ? "gate_up_bias" : "gate_up"), cols);
  w.linear = cols != 1;
  const int64_t inter = c.intermediate_size;
  if (!a.gate_up.fused.empty()) {
    const std::string tensor = layer_name(a.gate_up.fused, layer, suffix);
    for (const Range& rows : parallel::fused_gate_up_rows(inter, s.intermediate)) {
      p.take_rows(w, tensor, 2 * inter, "[2 * intermediate_size, ...]", rows);
    }
    return;
  }
  p.take_rows(w, layer_name(a.gate_up.gate, layer, suffix), inter, "[intermediate_size, ...]",
              s.intermediate);
  p.take_rows(w, layer_name(a.gate_up.up, layer, suffix), inter, "[intermediate_size, ...]",
              s.intermediate);
}

}  // namespace

int64_t intermediate_align(const ModelConfig& config) {
  // Float weights cut between any two units; quantized ones only between groups and packs, so no
  // rank's slice splits a group (DESIGN.md).
  if (!config.quant.enabled()) return 1;
  return std::lcm(config.quant.input_align(), config.quant.output_align());
}

namespace {

// Whether every rank of tp_size cuts the quantized weights on group / pack boundaries: o_proj's
// input at this rank's first query head, q/k/v's outputs at whole heads, the MLP with a group for
// every rank.
bool quantized_split_fits(const ModelConfig& c, int tp_size) {
  if (tp_size > c.num_heads) return false;
  const QuantConfig& q = c.quant;
  if (c.head_dim % q.output_align() != 0) return false;
  for (int rank = 0; rank < tp_size; ++rank) {
    const parallel::HeadShard h = parallel::shard_heads(c.num_heads, c.num_kv_heads, tp_size, rank);
    if (int64_t{h.q_head_begin} * c.head_dim % q.input_align() != 0) return false;
  }
  const int64_t align = intermediate_align(c);
  const auto enough = [&](int64_t units) { return units == 0 || (units + align - 1) / align >= tp_size; };
  return enough(c.intermediate_size) && enough(c.moe.expert_intermediate_size) &&
         enough(c.moe.shared_expert_intermediate_size);
}

void check_quantized_split(const ModelConfig& c, int tp_size) {
  // More ranks than query heads is refused by the head split itself, naming that limit.
  if (!c.quant.enabled() || tp_size > c.num_heads || quantized_split_fits(c, tp_size)) return;
  std::vector<int> valid;
  for (int n = 1; n <= c.num_heads; ++n) {
    if (quantized_split_fits(c, n)) valid.push_back(n);
  }
  raise(ErrorCode::kInvalidArgument,
        "{}: {}-bit {} with group_size {} cannot be split over {} ranks: a rank's cut would fall "
        "inside a group or a pack (num_attention_heads {} x head_dim {}, intermediate_size {}); "
        "valid TP sizes: {}",
        c.quant.file.string(), c.quant.bits, quant_method_name(c.quant.method),
        c.quant.group_size > 0 ? c.quant.group_size : -1, tp_size, c.num_heads, c.head_dim,
        c.intermediate_size, fmt::join(valid, ", "));
}

}  // namespace

int64_t shard_bytes(const WeightShard& weight, const QuantConfig& quant, int element_size) {
  const int bits = planned_bits(weight, quant);
  if (bits == 0) return weight.numel() * element_size;
  const int64_t in = weight.blocks.front().full_cols;
  const int64_t group = quant.group_size > 0 ? quant.group_size : in;
  // A row shard's columns start on a group boundary unless act-order scatters them over every group.
  const int64_t groups =
      quant.desc_act ? (in + group - 1) / group : (weight.cols + group - 1) / group;
  const int64_t index = quant.desc_act ? weight.cols * int64_t{sizeof(int32_t)} : 0;
  return weight.rows * kernels::code_row_bytes(bits, weight.cols) +
         2 * weight.rows * groups * element_size + index;
}

std::string layer_weight(int layer, const char* part) {
  return fmt::format("layers.{}.{}", layer, part);
}

RankShape rank_shape(const ModelConfig& config, int tp_size, int rank) {
  check_quantized_split(config, tp_size);
  RankShape shape;
  shape.tp_size = tp_size;
  shape.rank = rank;
  shape.heads = parallel::shard_heads(config.num_heads, config.num_kv_heads, tp_size, rank);
  shape.intermediate =
      parallel::split_range(config.intermediate_size, tp_size, rank, intermediate_align(config));
  shape.vocab = parallel::shard_vocab(config.vocab_size, tp_size, rank);
  const MoeShard moe = moe_shard(config, tp_size, rank);
  shape.expert_intermediate = moe.expert;
  shape.shared_intermediate = moe.shared;
  return shape;
}

std::set<std::string> accounted_tensors(const ModelConfig& config,
                                        const Architecture& architecture) {
  std::set<std::string> names;
  for (const WeightShard& weight : plan_weights(config, architecture, rank_shape(config, 1, 0))) {
    for (const SourceBlock& block : weight.blocks) {
      names.insert(block.tensor);
      // A quantized checkpoint stores a linear weight as these instead (whichever it ships).
      if (weight.linear && config.quant.enabled()) {
        for (std::string& name : quantized_tensor_names(block.tensor)) names.insert(std::move(name));
      }
    }
  }
  for (const std::string& pattern : architecture.unread) {
    if (pattern.find("{}") == std::string::npos) {
      names.insert(pattern);
      continue;
    }
    for (int layer = 0; layer < config.num_layers; ++layer) {
      names.insert(fmt::format(fmt::runtime(pattern), layer));
    }
  }
  return names;
}

std::vector<WeightShard> plan_weights(const ModelConfig& c, const Architecture& a,
                                      const RankShape& s) {
  Planner p(c, s);
  const int64_t hidden = c.hidden_size;
  const int64_t q_width = static_cast<int64_t>(c.num_heads) * c.head_dim;
  p.vocab("embed", a.embed + ".weight");
  for (int layer = 0; layer < c.num_layers; ++layer) {
    p.replicated(layer_weight(layer, "attn_norm"), layer_name(a.attn_norm, layer, ".weight"),
                 hidden, "[hidden_size]");
    plan_qkv(p, c, a, s, layer, ".weight", hidden);
    if (c.qkv_bias) plan_qkv(p, c, a, s, layer, ".bias", 1);
    p.row(layer_weight(layer, "o"), layer_name(a.o, layer, ".weight"), hidden, q_width,
          "[hidden_size, num_attention_heads * head_dim]",
          parallel::q_rows(s.heads, c.head_dim));
    if (c.o_bias) {
      p.replicated(layer_weight(layer, "o_bias"), layer_name(a.o, layer, ".bias"), hidden,
                   "[hidden_size]");
    }
    p.replicated(layer_weight(layer, "mlp_norm"), layer_name(a.mlp_norm, layer, ".weight"),
                 hidden, "[hidden_size]");
    if (c.moe.sparse(layer)) {
      for (WeightShard& w : plan_moe_layer(c, a, s, layer)) p.append(std::move(w));
      continue;
    }
    plan_gate_up(p, c, a, s, layer, ".weight", hidden);
    if (c.mlp_bias) plan_gate_up(p, c, a, s, layer, ".bias", 1);
    p.row(layer_weight(layer, "down"), layer_name(a.down, layer, ".weight"), hidden,
          c.intermediate_size, "[hidden_size, intermediate_size]", s.intermediate);
    if (c.mlp_bias) {
      p.replicated(layer_weight(layer, "down_bias"), layer_name(a.down, layer, ".bias"), hidden,
                   "[hidden_size]");
    }
  }
  p.replicated("final_norm", a.final_norm + ".weight", hidden, "[hidden_size]");
  // A GGUF lm_head (or, tied, the embedding) stored packed is multiplied packed; the tied
  // embedding's float shard stays for the lookup.
  const auto packed = [&](const std::string& tensor) { return c.quant.packed_bits_of(tensor) > 0; };
  if (!c.tie_word_embeddings) {
    p.vocab("lm_head", a.lm_head + ".weight", packed(a.lm_head + ".weight"));
  } else if (packed(a.embed + ".weight")) {
    p.vocab("lm_head", a.embed + ".weight", true);
  }
  return p.take();
}

}  // namespace tpserve::runtime
