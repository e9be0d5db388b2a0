#include "runtime/planning/memory_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>

#include "common/error.h"
#include "runtime/families/architecture.h"
#include "runtime/families/load_config.h"
#include "runtime/planning/scaling_model.h"

namespace tpserve::runtime {

PlanModel read_plan_model(const std::filesystem::path& config_file, std::string name) {
  PlanModel model;
  model.name = std::move(name);
  model.config = read_config_file(config_file);
  return model;
}

int64_t rank_weight_bytes(const PlanModel& model, const RankShape& shape, int element_size,
                          int64_t* replicated) {
  const Architecture* architecture = find_architecture(model.config.architecture);
  if (architecture == nullptr) {
    raise(ErrorCode::kUnimplemented, "{}: no adapter for {}", model.name, model.config.architecture);
  }
  int64_t total = 0;
  int64_t shared = 0;
  for (const WeightShard& weight : plan_weights(model.config, *architecture, shape)) {
    const int64_t bytes = shard_bytes(weight, model.config.quant, element_size);
    total += bytes;
    if (weight.kind == parallel::ShardKind::kReplicated) shared += bytes;
  }
  if (replicated != nullptr) *replicated = shared;
  return total;
}

MemoryPlan plan_memory(const PlanModel& model, const MemoryPlanOptions& options) {
  const ModelConfig& c = model.config;
  const int n = options.tp_size;
  MemoryPlan plan;
  plan.tp_size = n;
  ModelOptions model_options = options.model;
  double decode_total = 0;
  int64_t decode_largest = 0;
  for (int rank = 0; rank < n; ++rank) {
    RankSplit& split = plan.ranks.emplace_back();
    split.shape = rank_shape(c, n, rank);  // throws when n does not fit the heads
    int64_t replicated = 0;
    split.weight_bytes = rank_weight_bytes(model, split.shape, options.dtype_bytes, &replicated);
    split.kv_bytes_per_token = kv_bytes_per_token(c, split.shape, options.dtype_bytes,
                                                  options.model.kv_cache_dtype);
    split.decode_bytes = decode_bytes(c, split.shape, 1, 0, options.dtype_bytes,
                                       options.model.kv_cache_dtype).total();
    plan.weight_bytes = std::max(plan.weight_bytes, split.weight_bytes);
    plan.replicated_weight_bytes = replicated;
    plan.workspace_bytes = std::max(
        plan.workspace_bytes,
        static_cast<int64_t>(
            workspace_sizes(c, split.shape, model_options, options.dtype_bytes).total()));
    plan.kv_bytes_per_token = std::max(plan.kv_bytes_per_token, split.kv_bytes_per_token);
    decode_total += static_cast<double>(split.decode_bytes);
    decode_largest = std::max(decode_largest, split.decode_bytes);
  }
  plan.imbalance = decode_total > 0 ? static_cast<double>(decode_largest) * n / decode_total : 1.0;
  const int64_t block_size = model_options.block_size;
  plan.kv_block_bytes = plan.kv_bytes_per_token * block_size;
  plan.budget_bytes = static_cast<int64_t>(std::floor(
      static_cast<double>(options.gpu_memory_bytes) * options.gpu_utilization));
  const int64_t left = plan.budget_bytes - plan.weight_bytes - plan.workspace_bytes;
  plan.kv_blocks = left > 0 ? left / plan.kv_block_bytes : 0;
  plan.kv_tokens = plan.kv_blocks * block_size;
  plan.min_kv_blocks = (model_options.max_tokens_per_step + block_size - 1) / block_size;
  plan.fits = plan.kv_blocks >= plan.min_kv_blocks;
  if (!plan.fits) {
    const std::string budget = fmt::format("{} ({:.0f}% of {})", format_bytes(plan.budget_bytes),
                                           options.gpu_utilization * 100,
                                           format_bytes(options.gpu_memory_bytes));
    if (left <= 0) {
      plan.message = fmt::format(
          "{} does not fit at TP={}: weights {} + workspace {} = {} per rank exceed the budget {}",
          model.name, n, format_bytes(plan.weight_bytes), format_bytes(plan.workspace_bytes),
          format_bytes(plan.weight_bytes + plan.workspace_bytes), budget);
    } else {
      plan.message = fmt::format(
          "{} does not fit at TP={}: after weights {} + workspace {} the budget {} leaves {}, "
          "{} KV blocks of {}; one step of {} tokens needs {}",
          model.name, n, format_bytes(plan.weight_bytes), format_bytes(plan.workspace_bytes),
          budget, format_bytes(left), plan.kv_blocks, format_bytes(plan.kv_block_bytes),
          model_options.max_tokens_per_step, plan.min_kv_blocks);
    }
  }
  return plan;
}

int64_t parse_byte_size(std::string_view text) {
  const auto bad = [&](const char* why) -> int64_t {
    raise(ErrorCode::kInvalidArgument, "'{}' is not a size ({}); write e.g. 80GiB, 80GB, 81920MiB",
          text, why);
  };
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) return bad("no number");
  double number = 0;
  try {
    size_t used = 0;
    number = std::stod(std::string(text.substr(0, i)), &used);
    if (used != i) return bad("malformed number");
  } catch (const std::exception&) {
    return bad("malformed number");
  }
  std::string unit;
  for (char ch : text.substr(i)) {
    if (ch != ' ') unit += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  static const std::pair<const char*, double> kUnits[] = {
      {"", 1.0},      {"b", 1.0},
      {"kb", 1e3},    {"mb", 1e6},    {"gb", 1e9},    {"tb", 1e12},
      {"kib", 1024.0}, {"mib", 1048576.0}, {"gib", 1073741824.0}, {"tib", 1099511627776.0}};
  for (const auto& [name, scale] : kUnits) {
    if (unit == name) {
      const double bytes = number * scale;
      if (!(bytes >= 1.0) || bytes > 9.0e18) return bad("out of range");
      return static_cast<int64_t>(std::llround(bytes));
    }
  }
  return bad("unknown unit; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB");
}

std::string format_bytes(double bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  double value = bytes;
  while (std::fabs(value) >= 1024.0 && unit < 4) {
    value /= 1024.0;
    ++unit;
  }
  return unit == 0 ? fmt::format("{:.0f} B", value) : fmt::format("{:.2f} {}", value, kUnits[unit]);
}

}  // namespace tpserve::runtime
