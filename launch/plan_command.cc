// `tpserve plan`: what one rank holds for a model at TP=N on a device of a given memory, before any
// weight is read (runtime/planning/memory_plan.h).
//
//   tpserve plan --preset qwen2-72b --tp 1,2,4,8 --dtype bf16 --gpu-mem 80GiB
//
// One row per N, then, for each N that splits unevenly, the per-rank split (query and KV heads,
// MLP and expert units, vocabulary rows) and what the imbalance costs: a memory-bound decode step
// waits for the rank with the most bytes. Exit status 1 when any N does not fit, with one line per
// such N saying why.
#include <fmt/format.h>

#include <cstdio>

#include "common/error.h"
#include "launch/command.h"
#include "launch/model_source.h"
#include "runtime/planning/memory_plan.h"

namespace tpserve::launch {

namespace {

// "3,3,2,2,2"; past 8 ranks, runs: "3 x2, 2 x3".
std::string part_sizes(const std::vector<runtime::RankSplit>& ranks,
                       int64_t (*size)(const runtime::RankShape&)) {
  std::vector<std::pair<int64_t, int>> runs;
  std::string text;
  for (const runtime::RankSplit& rank : ranks) {
    const int64_t n = size(rank.shape);
    text += fmt::format("{}{}", text.empty() ? "" : ",", n);
    if (!runs.empty() && runs.back().first == n) {
      ++runs.back().second;
    } else {
      runs.emplace_back(n, 1);
    }
  }
  if (ranks.size() <= 8) return text;
  text.clear();
  for (const auto& [n, count] : runs) {
    text += fmt::format("{}{} x{}", text.empty() ? "" : ", ", n, count);
  }
  return text;
}

// The per-rank split of an uneven N, and its predicted cost.
void print_split(const runtime::ModelConfig& c, const runtime::MemoryPlan& plan) {
  const auto& r = plan.ranks;
  std::string parts = fmt::format(
      "q heads {} | kv heads {} | intermediate {}",
      part_sizes(r, [](const runtime::RankShape& s) -> int64_t { return s.heads.num_q_heads(); }),
      part_sizes(r, [](const runtime::RankShape& s) -> int64_t { return s.heads.num_kv_heads(); }),
      part_sizes(r, [](const runtime::RankShape& s) { return s.intermediate.size(); }));
  if (c.moe.any_sparse()) {
    parts += fmt::format(
        " | expert {} | shared expert {}",
        part_sizes(r, [](const runtime::RankShape& s) { return s.expert_intermediate.size(); }),
        part_sizes(r, [](const runtime::RankShape& s) { return s.shared_intermediate.size(); }));
  }
  parts += fmt::format(" | vocab {}", part_sizes(r, [](const runtime::RankShape& s) {
                         return s.vocab.end - s.vocab.begin;
                       }));
  std::printf("  tp %d split: %s\n", plan.tp_size, parts.c_str());
  std::printf("  tp %d imbalance %.3f (largest shard / mean, decode bytes): a memory-bound decode "
              "step takes ~%.1f%% longer than an even split of the same bytes\n",
              plan.tp_size, plan.imbalance, (plan.imbalance - 1) * 100);
}

bool uneven(const runtime::MemoryPlan& plan) {
  for (const runtime::RankSplit& rank : plan.ranks) {
    const runtime::RankShape& a = rank.shape;
    const runtime::RankShape& b = plan.ranks.front().shape;
    if (a.heads.num_q_heads() != b.heads.num_q_heads() ||
        a.heads.num_kv_heads() != b.heads.num_kv_heads() ||
        a.intermediate.size() != b.intermediate.size() ||
        a.expert_intermediate.size() != b.expert_intermediate.size() ||
        a.shared_intermediate.size() != b.shared_intermediate.size() ||
        a.vocab.end - a.vocab.begin != b.vocab.end - b.vocab.begin) {
      return true;
    }
  }
  return false;
}

struct PlanOptions {
  ModelSource source;
  std::string tp = "1";
  std::string dtype = "bf16";
  std::string gpu_mem = "80GiB";
  double gpu_util = 0.90;
  int block_size = 16;
  std::string kv_cache_dtype = "auto";  // auto | int8
  int max_tokens_per_step = 256;
  int max_seqs = 64;
};

int run_plan(const PlanOptions& options) {
  const runtime::PlanModel model = read_model_source(options.source);
  const runtime::ModelConfig& c = model.config;
  runtime::MemoryPlanOptions plan_options;
  const DType compute = parse_compute_dtype(options.dtype);
  plan_options.dtype_bytes = dtype_size(compute);
  // int8 is planned on any device (what it would hold); fp8 and unknown names are refused.
  plan_options.model.kv_cache_dtype = parse_kv_cache_dtype(options.kv_cache_dtype);
  plan_options.gpu_memory_bytes = runtime::parse_byte_size(options.gpu_mem);
  plan_options.gpu_utilization = options.gpu_util;
  plan_options.model.block_size = options.block_size;
  plan_options.model.max_tokens_per_step = options.max_tokens_per_step;
  plan_options.model.max_seqs = options.max_seqs;
  plan_options.model.max_logit_rows = options.max_seqs;  // one next-token row per sequence
  const std::vector<int> tp_sizes = parse_int_list(options.tp, "--tp");

  std::printf("%s (%s): %d layers, hidden %lld, %d q / %d kv heads x %d, intermediate %lld, "
              "vocab %lld%s\n",
              model.name.c_str(), c.architecture.c_str(), c.num_layers,
              static_cast<long long>(c.hidden_size), c.num_heads, c.num_kv_heads, c.head_dim,
              static_cast<long long>(c.intermediate_size), static_cast<long long>(c.vocab_size),
              c.moe.any_sparse()
                  ? fmt::format(", MoE {} experts (top {}) x {} + shared {}", c.moe.num_experts,
                                c.moe.experts_per_token, c.moe.expert_intermediate_size,
                                c.moe.shared_expert_intermediate_size).c_str()
                  : "");
  std::printf("%s, KV cache %s, %s per device, %.0f%% usable; block %d, %d tokens/step, %d seqs; "
              "context %lld\n",
              options.dtype.c_str(),
              runtime::kv_cache_dtype_name(plan_options.model.kv_cache_dtype, compute).c_str(),
              runtime::format_bytes(plan_options.gpu_memory_bytes).c_str(),
              options.gpu_util * 100, options.block_size, options.max_tokens_per_step,
              options.max_seqs, static_cast<long long>(c.max_position_embeddings));
  std::printf("%4s %14s %14s %12s %12s %10s %11s %11s %5s %9s\n", "tp", "weights/rank",
              "(replicated)", "workspace", "KV/token", "KV blocks", "KV tokens", "full ctxs", "fits",
              "imbalance");
  std::vector<std::string> failures;
  std::vector<runtime::MemoryPlan> uneven_plans;
  for (int n : tp_sizes) {
    plan_options.tp_size = n;
    const runtime::MemoryPlan plan = runtime::plan_memory(model, plan_options);
    std::printf("%4d %14s %14s %12s %12s %10lld %11lld %11lld %5s %9.3f\n", n,
                runtime::format_bytes(plan.weight_bytes).c_str(),
                runtime::format_bytes(plan.replicated_weight_bytes).c_str(),
                runtime::format_bytes(plan.workspace_bytes).c_str(),
                runtime::format_bytes(plan.kv_bytes_per_token).c_str(),
                static_cast<long long>(plan.kv_blocks), static_cast<long long>(plan.kv_tokens),
                static_cast<long long>(plan.kv_tokens / c.max_position_embeddings),
                plan.fits ? "yes" : "NO", plan.imbalance);
    if (!plan.fits) failures.push_back(plan.message);
    if (uneven(plan)) uneven_plans.push_back(plan);
  }
  if (!uneven_plans.empty()) {
    std::printf("uneven splits (every rank is sized for the largest shard; the KV pool for the rank "
                "with the most KV heads):\n");
  }
  for (const runtime::MemoryPlan& plan : uneven_plans) print_split(c, plan);
  std::fflush(stdout);
  for (const std::string& failure : failures) std::fprintf(stderr, "error: %s\n", failure.c_str());
  return failures.empty() ? 0 : 1;
}

}  // namespace

void register_plan_command(CLI::App& app, CommandRunner& runner) {
  auto options = std::make_shared<PlanOptions>();
  CLI::App* command = app.add_subcommand(
      "plan", "Per-rank memory plan (weights, workspace, KV cache) of a model at TP=N");
  add_model_source_options(*command, options->source);
  command->add_option("--tp", options->tp, "Tensor-parallel size, or a list: 1,2,4,8");
  command->add_option("--dtype", options->dtype, "bf16, fp16 or f32");
  command->add_option("--gpu-mem", options->gpu_mem, "One device's memory: 80GiB, 80GB, 81920MiB");
  command->add_option("--gpu-util", options->gpu_util, "Fraction of it tpserve may use")
      ->check(CLI::Range(0.01, 1.0));
  command->add_option("--block-size", options->block_size, "KV cache positions per block")
      ->check(CLI::Range(1, 1024));
  command->add_option("--kv-cache-dtype", options->kv_cache_dtype,
                      "KV cache element type: auto (the --dtype) or int8 (codes + a float32 scale "
                      "per position and KV head)");
  command->add_option("--max-tokens-per-step", options->max_tokens_per_step,
                      "Token budget of one step")->check(CLI::Range(1, 1 << 20));
  command->add_option("--max-seqs", options->max_seqs, "Sequences per step")
      ->check(CLI::Range(1, 1 << 16));
  command->callback([options, &runner] { runner = [options] { return run_plan(*options); }; });
}

}  // namespace tpserve::launch
