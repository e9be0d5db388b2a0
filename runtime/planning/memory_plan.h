// Memory is planned, not discovered: for a model shape, a TP size, a dtype and a device's memory,
// what one rank holds — its weight shards exactly as the shard plan slices them, the activation
// workspace exactly as Model allocates it — and how many KV cache blocks fit in what is left.
// `tpserve plan` prints it; `tpserve bench` sizes its KV pool from it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/config/model_config.h"
#include "runtime/model/model.h"
#include "runtime/model/weight_plan.h"

namespace tpserve::runtime {

// A model shape to plan for (sparse MoE layers included: config.moe).
struct PlanModel {
  std::string name;  // the preset or checkpoint folder name, for messages
  ModelConfig config;
};

// Reads a config.json-format file (a checkpoint's config.json or a preset) with read_config_file.
PlanModel read_plan_model(const std::filesystem::path& config_file, std::string name);

struct MemoryPlanOptions {
  int tp_size = 1;
  int dtype_bytes = 2;             // of the compute dtype: weights, activations and KV cache
  int64_t gpu_memory_bytes = 0;    // one device's memory
  double gpu_utilization = 0.90;   // fraction of it tpserve may use
  ModelOptions model;              // max_tokens_per_step, max_seqs, max_logit_rows, block_size,
                                   // kv_cache_dtype
};

// One rank's part of an uneven split (parts differ by at most one head, unit or vocabulary row).
struct RankSplit {
  RankShape shape;
  int64_t weight_bytes = 0;
  int64_t kv_bytes_per_token = 0;
  int64_t decode_bytes = 0;  // one decode step of batch 1 (scaling_model.h's decode_bytes)
};

// Per rank; where ranks differ (uneven splits of heads, units or vocabulary) every number is the
// largest rank's, so every rank is sized for the largest shard and all hold the same KV blocks.
struct MemoryPlan {
  int tp_size = 1;
  int64_t budget_bytes = 0;             // gpu_memory_bytes * gpu_utilization
  int64_t weight_bytes = 0;             // every shard of this rank
  int64_t replicated_weight_bytes = 0;  // of which replicated on every rank (norms, biases, routers)
  int64_t workspace_bytes = 0;
  int64_t kv_bytes_per_token = 0;       // layers * 2 (K, V) * local kv heads * head_dim * dtype
                                        // (int8: * (head_dim + 4), codes and a float32 scale)
  int64_t kv_block_bytes = 0;
  int64_t kv_blocks = 0;                // blocks that fit in the budget after weights + workspace
  int64_t kv_tokens = 0;                // kv_blocks * block_size
  int64_t min_kv_blocks = 0;            // one full step of max_tokens_per_step tokens
  bool fits = false;
  std::string message;                  // why not, with the numbers (empty when it fits)
  std::vector<RankSplit> ranks;         // rank 0 .. N-1
  // Largest shard / mean, in decode bytes: a memory-bound decode step waits at every all-reduce
  // for the rank with the most bytes, so it takes `imbalance` times what an even split of the
  // same bytes would (1 for an even split).
  double imbalance = 1.0;
};

// Throws (kInvalidArgument, the shard plan's message) when tp_size exceeds the query heads.
MemoryPlan plan_memory(const PlanModel& model, const MemoryPlanOptions& options);

// Bytes of one rank's shards (the weight plan's, MoE experts included) in a compute dtype of
// `element_size` bytes, quantized linears as they are stored (shard_bytes); `replicated` receives
// the replicated part.
int64_t rank_weight_bytes(const PlanModel& model, const RankShape& shape, int element_size,
                          int64_t* replicated);

// "80GiB", "80 GB", "81920MiB", "1.5TiB", "1024" (bytes): KB/MB/GB/TB are powers of 1000,
// KiB/MiB/GiB/TiB of 1024, case-insensitive. Throws kInvalidArgument naming the text.
int64_t parse_byte_size(std::string_view text);

// "67.73 GiB", "512.0 MiB", "96 B".
std::string format_bytes(double bytes);

}  // namespace tpserve::runtime
