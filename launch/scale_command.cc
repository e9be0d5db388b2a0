// `tpserve scale`: predicted decode step time and throughput of a model at several TP sizes, from
// the memory plan (what fits per rank) and runtime/planning/scaling_model.h (compute + ring collectives).
//
//   tpserve scale --preset qwen2-72b --tp 2,4,8 --batch 1,32 --context 1024
//   tpserve scale --preset qwen2-72b --tp 8 --measured bench.json     # measured per-shard compute
//
// With --measured FILE (a `tpserve bench --json` file), the compute time of (TP, B, C) is the
// bench's measured per-shard step time where the file has that row; the roofline otherwise.
//
//   mpirun -np 2 tpserve scale --measure-comm [--json comm.json]
//
// times MPI all-reduce (the MpiCommunicator the CPU ranks use) for messages of 4 B .. 64 MiB and
// fits the ring model's per-step latency and bus bandwidth; pass them back as --link-latency-us
// and --link-gbps.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <tuple>
#include <vector>

#include "common/error.h"
#include "launch/command.h"
#include "launch/model_source.h"
#include "parallel/mpi_communicator.h"
#include "runtime/planning/memory_plan.h"
#include "runtime/planning/scaling_model.h"

namespace tpserve::launch {
namespace {

using Clock = std::chrono::steady_clock;

struct ScaleOptions {
  ModelSource source;
  std::string tp = "2,4,8";
  std::string batch = "1,32";
  std::string context = "1024";
  std::string dtype = "bf16";
  runtime::Interconnect link;
  double hbm_gbps = 3350.0;
  double hbm_efficiency = 0.8;
  std::string gpu_mem = "80GiB";
  double gpu_util = 0.90;
  int block_size = 16;
  int max_tokens_per_step = 256;
  int max_seqs = 64;
  std::string measured_path;
  std::string json_path;
  bool measure_comm = false;
  int64_t max_comm_bytes = int64_t{64} << 20;
};

// (tp, batch, context) -> measured per-shard step seconds, from a `tpserve bench --json` file.
using MeasuredSteps = std::map<std::tuple<int, int, int64_t>, double>;

MeasuredSteps read_measured(const std::string& path, const runtime::PlanModel& model) {
  std::ifstream file(path);
  if (!file) raise(ErrorCode::kNotFound, "--measured: cannot read {}", path);
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(file);
  } catch (const std::exception& e) {
    raise(ErrorCode::kInvalidArgument, "--measured {}: not JSON ({})", path, e.what());
  }
  if (!doc.contains("decode") || !doc.contains("layers") || !doc.contains("model_layers")) {
    raise(ErrorCode::kInvalidArgument, "--measured {}: not a `tpserve bench --json` file", path);
  }
  if (doc["layers"] != doc["model_layers"]) {
    raise(ErrorCode::kInvalidArgument, "--measured {}: the bench ran {} of {} layers; a step "
          "time of the whole model needs a run without --layers", path, doc["layers"].dump(),
          doc["model_layers"].dump());
  }
  if (doc.value("model", std::string()) != model.name) {
    std::fprintf(stderr, "scale: note: %s measured '%s', predicting '%s'\n", path.c_str(),
                 doc.value("model", std::string("?")).c_str(), model.name.c_str());
  }
  const int file_tp = doc.value("tp", 1);
  MeasuredSteps steps;
  for (const nlohmann::json& row : doc["decode"]) {
    if (row.value("skipped", false)) continue;
    steps[{row.value("tp", file_tp), row["batch"].get<int>(), row["context"].get<int64_t>()}] =
        row["step_ms"].get<double>() * 1e-3;
  }
  return steps;
}

runtime::MemoryPlanOptions plan_options_for(const ScaleOptions& options, int element) {
  runtime::MemoryPlanOptions plan;
  plan.dtype_bytes = element;
  plan.gpu_memory_bytes = runtime::parse_byte_size(options.gpu_mem);
  plan.gpu_utilization = options.gpu_util;
  plan.model.block_size = options.block_size;
  plan.model.max_tokens_per_step = options.max_tokens_per_step;
  plan.model.max_seqs = options.max_seqs;
  plan.model.max_logit_rows = options.max_seqs;
  return plan;
}

int run_predict(const ScaleOptions& options) {
  const runtime::PlanModel model = read_model_source(options.source);
  const runtime::ModelConfig& config = model.config;
  const int element = dtype_size(parse_compute_dtype(options.dtype));
  const std::vector<int> tp_sizes = parse_int_list(options.tp, "--tp");
  const std::vector<int> batches = parse_int_list(options.batch, "--batch");
  const std::vector<int> contexts = parse_int_list(options.context, "--context");
  const MeasuredSteps measured =
      options.measured_path.empty() ? MeasuredSteps{} : read_measured(options.measured_path, model);
  for (int tp : tp_sizes) runtime::rank_shape(config, tp, 0);  // every N checked before any row

  runtime::MemoryPlanOptions plan_options = plan_options_for(options, element);
  std::printf("%s, %s; %s per device, %.0f%% usable; link %.1f GB/s busbw, %.2f us per ring step; "
              "HBM %.0f GB/s x %.2f%s\n",
              model.name.c_str(), options.dtype.c_str(),
              runtime::format_bytes(plan_options.gpu_memory_bytes).c_str(), options.gpu_util * 100,
              options.link.bus_gbps, options.link.latency_us, options.hbm_gbps,
              options.hbm_efficiency,
              measured.empty() ? "" : fmt::format("; measured compute from {}", options.measured_path).c_str());
  std::printf("memory per rank:\n%4s %12s %12s %12s %12s %12s %6s\n", "tp", "weights", "workspace",
              "KV/token", "KV tokens", "free for KV", "fits");
  nlohmann::json doc = {{"model", model.name}, {"dtype", options.dtype},
                        {"link_gbps", options.link.bus_gbps}, {"link_latency_us", options.link.latency_us},
                        {"hbm_gbps", options.hbm_gbps}, {"hbm_efficiency", options.hbm_efficiency},
                        {"gpu_memory_bytes", plan_options.gpu_memory_bytes},
                        {"gpu_utilization", options.gpu_util}};
  doc["memory"] = nlohmann::json::array();
  bool all_fit = true;
  std::map<int, int64_t> kv_blocks;  // per TP: what the plan leaves for the KV cache
  for (int tp : tp_sizes) {
    plan_options.tp_size = tp;
    const runtime::MemoryPlan plan = runtime::plan_memory(model, plan_options);
    kv_blocks[tp] = plan.kv_blocks;
    all_fit = all_fit && plan.fits;
    std::printf("%4d %12s %12s %12s %12lld %12s %6s\n", tp, runtime::format_bytes(plan.weight_bytes).c_str(),
                runtime::format_bytes(plan.workspace_bytes).c_str(),
                runtime::format_bytes(plan.kv_bytes_per_token).c_str(),
                static_cast<long long>(plan.kv_tokens),
                runtime::format_bytes(static_cast<double>(plan.kv_blocks) * plan.kv_block_bytes).c_str(),
                plan.fits ? "yes" : "NO");
    doc["memory"].push_back({{"tp", tp}, {"weight_bytes", plan.weight_bytes},
                             {"workspace_bytes", plan.workspace_bytes},
                             {"kv_bytes_per_token", plan.kv_bytes_per_token},
                             {"kv_tokens", plan.kv_tokens}, {"fits", plan.fits}});
  }

  std::printf("predicted decode step (rank 0's shard; compute + communication, not overlapped):\n");
  std::printf("%4s %6s %8s %11s %9s %11s %10s %10s %11s %12s %8s %8s\n", "tp", "batch", "context",
              "bytes/step", "compute", "roofline ms", "allreduce", "gather+bc", "step ms",
              "tokens/s", "comm %", "KV fits");
  doc["predictions"] = nlohmann::json::array();
  for (int context : contexts) {
    for (int batch : batches) {
      for (int tp : tp_sizes) {
        runtime::ScalingOptions s;
        s.tp_size = tp;
        s.batch = batch;
        s.context = context;
        s.element = element;
        s.link = options.link;
        s.hbm_gbps = options.hbm_gbps;
        s.hbm_efficiency = options.hbm_efficiency;
        if (const auto it = measured.find({tp, batch, context}); it != measured.end()) {
          s.measured_compute_s = it->second;
        }
        const runtime::ScalingPrediction p = runtime::predict_decode_step(config, s);
        // B sequences of C + 1 positions (the context and the new token) in whole blocks.
        const int64_t blocks = int64_t{batch} * ((context + options.block_size) / options.block_size);
        const bool kv_fits = blocks <= kv_blocks[tp];
        const std::string compute = fmt::format("{:.3f}{}", p.compute_s * 1e3,
                                                p.compute_measured ? " m" : " r");
        std::printf("%4d %6d %8d %11s %9s %11.3f %10.3f %10.3f %11.3f %12.1f %7.1f%% %8s\n", tp, batch,
                    context, runtime::format_bytes(p.bytes.total()).c_str(), compute.c_str(),
                    p.roofline_compute_s * 1e3, p.comm.all_reduce_s * 1e3,
                    (p.comm.all_gather_s + p.comm.broadcast_s) * 1e3, p.step_s * 1e3,
                    p.tokens_per_s, 100 * p.comm.total_s() / p.step_s, kv_fits ? "yes" : "NO");
        doc["predictions"].push_back(
            {{"tp", tp}, {"batch", batch}, {"context", context}, {"bytes_per_step", p.bytes.total()},
             {"compute_ms", p.compute_s * 1e3}, {"compute_measured", p.compute_measured},
             {"roofline_compute_ms", p.roofline_compute_s * 1e3},
             {"all_reduces", p.comm.all_reduces}, {"all_reduce_bytes", p.comm.all_reduce_bytes},
             {"all_reduce_ms", p.comm.all_reduce_s * 1e3},
             {"all_gather_bytes", p.comm.all_gather_bytes}, {"all_gather_ms", p.comm.all_gather_s * 1e3},
             {"broadcast_ms", p.comm.broadcast_s * 1e3}, {"comm_ms", p.comm.total_s() * 1e3},
             {"step_ms", p.step_s * 1e3}, {"tokens_per_s", p.tokens_per_s},
             {"kv_fits", kv_fits}});
      }
    }
  }
  std::printf("compute: m = measured per-shard step (--measured), r = roofline (bytes / (HBM x "
              "efficiency)); KV fits: B x (C + 1) positions within the plan's KV capacity\n");
  std::fflush(stdout);
  if (!options.json_path.empty()) {
    std::ofstream file(options.json_path);
    if (!file) raise(ErrorCode::kInvalidArgument, "--json: cannot write {}", options.json_path);
    file << doc.dump(2) << "\n";
  }
  if (!all_fit) std::fprintf(stderr, "scale: note: some TP sizes do not fit (fits = NO)\n");
  return 0;
}

// Seconds of one all_reduce_sum of `count` floats: the median over 5 trials of the mean of `reps`
// calls (rank 0 picks reps for ~0.02 s a trial; everyone follows), after an untimed warm-up. The
// median keeps a trial in which a rank was descheduled (oversubscribed cores) from skewing it.
double time_all_reduce(parallel::Communicator& comm, std::vector<float>& buffer, size_t count) {
  for (int i = 0; i < 3; ++i) comm.all_reduce_sum(buffer.data(), count, DType::kF32);
  comm.barrier();
  auto start = Clock::now();
  comm.all_reduce_sum(buffer.data(), count, DType::kF32);
  double first = std::chrono::duration<double>(Clock::now() - start).count();
  comm.broadcast(&first, sizeof(first), 0);
  const int reps = static_cast<int>(std::clamp(0.02 / std::max(first, 1e-7), 2.0, 500.0));
  std::vector<double> trials;
  for (int trial = 0; trial < 5; ++trial) {
    comm.barrier();
    start = Clock::now();
    for (int i = 0; i < reps; ++i) comm.all_reduce_sum(buffer.data(), count, DType::kF32);
    trials.push_back(std::chrono::duration<double>(Clock::now() - start).count() / reps);
  }
  std::sort(trials.begin(), trials.end());
  double seconds = trials[trials.size() / 2];
  comm.broadcast(&seconds, sizeof(seconds), 0);
  return seconds;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

int run_measure_comm(const ScaleOptions& options) {
  parallel::MpiSession session;
  parallel::MpiCommunicator comm(MPI_COMM_WORLD);
  const int n = comm.size();
  std::vector<int64_t> sizes;
  for (int64_t bytes = 4; bytes <= options.max_comm_bytes; bytes *= 4) sizes.push_back(bytes);
  std::vector<float> buffer(static_cast<size_t>(sizes.back() / 4), 1.0f);
  std::vector<double> seconds;
  for (int64_t bytes : sizes) seconds.push_back(time_all_reduce(comm, buffer, static_cast<size_t>(bytes / 4)));
  if (comm.rank() != 0) return 0;
  // Ring fit: messages up to 1 KiB are all latency (2(N-1) steps each); those from 1 MiB up give
  // the bus bandwidth once that latency is taken off. Medians, so one noisy size does not decide.
  runtime::Interconnect fit;
  if (n > 1) {
    std::vector<double> latencies, bandwidths;
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (sizes[i] <= 1024) latencies.push_back(seconds[i] / (2.0 * (n - 1)) * 1e6);
    }
    fit.latency_us = median(latencies);
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (sizes[i] < (int64_t{1} << 20) && i + 1 != sizes.size()) continue;
      const double transfer = std::max(seconds[i] - 2.0 * (n - 1) * fit.latency_us * 1e-6, 1e-9);
      bandwidths.push_back(2.0 * (n - 1) / n * static_cast<double>(sizes[i]) / transfer / 1e9);
    }
    fit.bus_gbps = median(bandwidths);
  }
  std::printf("MPI all-reduce (f32, host memory, MpiCommunicator) on %d rank(s):\n", n);
  std::printf("%12s %12s %12s %12s %14s\n", "bytes", "time us", "algbw GB/s", "busbw GB/s",
              "ring fit us");
  nlohmann::json rows = nlohmann::json::array();
  for (size_t i = 0; i < sizes.size(); ++i) {
    const double algbw = static_cast<double>(sizes[i]) / seconds[i] / 1e9;
    const double busbw = n > 1 ? algbw * 2.0 * (n - 1) / n : 0.0;
    const double model_s = runtime::ring_all_reduce_seconds(static_cast<double>(sizes[i]), n, fit);
    std::printf("%12lld %12.2f %12.3f %12.3f %14.2f\n", static_cast<long long>(sizes[i]),
                seconds[i] * 1e6, algbw, busbw, model_s * 1e6);
    rows.push_back({{"bytes", sizes[i]}, {"us", seconds[i] * 1e6}, {"algbw_gbps", algbw},
                    {"busbw_gbps", busbw}, {"ring_fit_us", model_s * 1e6}});
  }
  if (n > 1) {
    std::printf("ring fit: --link-gbps %.3f --link-latency-us %.3f\n", fit.bus_gbps, fit.latency_us);
  } else {
    std::printf("one rank: nothing crosses a link (run under mpirun -np N)\n");
  }
  std::fflush(stdout);
  if (!options.json_path.empty()) {
    std::ofstream file(options.json_path);
    if (!file) raise(ErrorCode::kInvalidArgument, "--json: cannot write {}", options.json_path);
    file << nlohmann::json{{"ranks", n}, {"all_reduce", rows}, {"link_gbps", fit.bus_gbps},
                           {"link_latency_us", fit.latency_us}}.dump(2) << "\n";
  }
  return 0;
}

}  // namespace

void register_scale_command(CLI::App& app, CommandRunner& runner) {
  auto options = std::make_shared<ScaleOptions>();
  CLI::App* command = app.add_subcommand(
      "scale", "Predicted decode step time / throughput at TP=N (memory plan + compute + ring "
               "collectives); --measure-comm times MPI all-reduce under mpirun");
  add_model_source_options(*command, options->source);
  command->add_option("--tp", options->tp, "Tensor-parallel sizes, e.g. 2,4,8");
  command->add_option("--batch", options->batch, "Batch sizes, e.g. 1,32");
  command->add_option("--context", options->context, "Context lengths, e.g. 1024");
  command->add_option("--dtype", options->dtype, "bf16, fp16 or f32 (weights, KV, collectives)");
  command->add_option("--link-gbps", options->link.bus_gbps,
                      "Interconnect bus bandwidth per rank, GB/s (default 360: H100 NVLink 4 "
                      "busbw as NCCL reaches it; an assumption)")
      ->check(CLI::PositiveNumber);
  command->add_option("--link-latency-us", options->link.latency_us,
                      "Latency per ring step, us (default 8; an assumption)")
      ->check(CLI::NonNegativeNumber);
  command->add_option("--hbm-gbps", options->hbm_gbps, "Device memory bandwidth, GB/s (default 3350: H100 SXM)")
      ->check(CLI::PositiveNumber);
  command->add_option("--hbm-efficiency", options->hbm_efficiency,
                      "Fraction of it a decode step achieves (default 0.8)")
      ->check(CLI::Range(0.001, 1.0));
  command->add_option("--gpu-mem", options->gpu_mem, "One device's memory (default 80GiB)");
  command->add_option("--gpu-util", options->gpu_util, "Fraction of it tpserve may use")
      ->check(CLI::Range(0.01, 1.0));
  command->add_option("--block-size", options->block_size, "KV cache positions per block")
      ->check(CLI::Range(1, 1024));
  command->add_option("--max-tokens-per-step", options->max_tokens_per_step,
                      "Workspace: tokens per step (as tpserve plan)")
      ->check(CLI::Range(1, 1 << 20));
  command->add_option("--max-seqs", options->max_seqs, "Workspace: sequences per step (as tpserve plan)")
      ->check(CLI::Range(1, 1 << 20));
  command->add_option("--measured", options->measured_path,
                      "A `tpserve bench --json` file: its per-shard step times replace the roofline");
  command->add_option("--json", options->json_path, "Write the results as JSON to this file");
  command->add_flag("--measure-comm", options->measure_comm,
                    "Time MPI all-reduce for 4 B .. --max-comm-bytes under mpirun and fit the ring model");
  command->add_option("--max-comm-bytes", options->max_comm_bytes, "Largest message of --measure-comm")
      ->check(CLI::Range(int64_t{4}, int64_t{1} << 32));
  command->callback([options, &runner] {
    runner = [options] {
      return options->measure_comm ? run_measure_comm(*options) : run_predict(*options);
    };
  });
}

}  // namespace tpserve::launch
