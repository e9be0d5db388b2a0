// The per-rank sharding table: for every canonical weight of the decoder, which blocks of which
// checkpoint tensors this rank reads, in what order, and how big its shard is. Built from the
// family adapter (names, fused layouts) and parallel/shard_plan (how each kind is sliced), before
// any byte is read, so every shape can be validated and memory planned up front.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "parallel/shard_plan.h"
#include "runtime/config/model_config.h"
#include "runtime/families/architecture.h"

namespace tpserve::runtime {

// A block of a checkpoint tensor viewed as a matrix (rows = shape[0], cols = the rest).
struct SourceBlock {
  std::string tensor;          // full checkpoint name, e.g. "model.layers.0.self_attn.q_proj.weight"
  int64_t full_rows = 0;       // the whole tensor's shape as the config implies it
  int64_t full_cols = 0;
  std::string shape_meaning;   // how that shape follows from config.json, for error messages
  parallel::Range rows;
  parallel::Range cols;
};

// One canonical weight on this rank: the blocks stacked along rows; rows past them are zero
// padding (vocab-parallel shards are padded to equal size).
struct WeightShard {
  std::string name;  // canonical: "embed", "layers.3.qkv", "layers.3.qkv_bias", ...
  parallel::ShardKind kind = parallel::ShardKind::kReplicated;
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<SourceBlock> blocks;
  // A linear layer's weight (qkv, o, gate_up, down, an expert's): loaded quantized where the
  // checkpoint stores it so (runtime/model/quantized_load.h), else as floats.
  bool linear = false;
  int64_t numel() const { return rows * cols; }
};

// What this rank holds of the attention heads, the MLP and the vocabulary: contiguous ranges,
// as balanced as parallel::split_range makes them, possibly uneven (any N up to the query heads).
struct RankShape {
  int tp_size = 1;
  int rank = 0;
  parallel::HeadShard heads;
  parallel::Range intermediate;
  parallel::Range expert_intermediate;  // of each expert (sparse layers; runtime/model/moe_plan.h)
  parallel::Range shared_intermediate;  // of the shared expert
  parallel::VocabShard vocab;
};

// Throws (kInvalidArgument, naming the numbers) when tp_size exceeds the query heads (or, for a
// sparse model, an expert's units), and for a quantized model when a rank's cut would fall inside
// a group or a pack (naming the TP sizes that work).
RankShape rank_shape(const ModelConfig& config, int tp_size, int rank);

// The indivisible block of the MLP's units (and experts'), split_range's `align`: 1 for float
// weights; for quantized ones a whole group of down's input columns that is also a whole pack of
// gate/up's output rows (QuantConfig::input_align, output_align).
int64_t intermediate_align(const ModelConfig& config);

std::vector<WeightShard> plan_weights(const ModelConfig& config, const Architecture& architecture,
                                      const RankShape& shape);

// Every checkpoint tensor the whole model reads on some rank (the plan of one rank holding all of
// it), plus the adapter's unread tensors for each layer: what strict tensor accounting expects.
std::set<std::string> accounted_tensors(const ModelConfig& config,
                                        const Architecture& architecture);

// Bytes of a shard on a device whose compute dtype has `element_size` bytes: numel elements, or for
// a linear shard of a quantized model its packed codes plus a scale and a min per (row, group) and,
// with act-order, a group index per input column (kernels/quantized.h).
int64_t shard_bytes(const WeightShard& weight, const QuantConfig& quant, int element_size);

// Canonical names, shared by the plan and the model.
std::string layer_weight(int layer, const char* part);  // "layers.<layer>.<part>"

}  // namespace tpserve::runtime
