// `tpserve bench`: decode and prefill speed of ONE rank's shard of a model at TP=N, in one process,
// with synthetic weights (no checkpoint needed) and a LocalShardCommunicator: collectives are
// no-ops, so this measures each shard's compute and memory traffic WITHOUT communication.
//
//   tpserve bench --preset qwen2.5-7b --device cuda --dtype bf16 --batch 1,8,64 --context 128,4096
//
// For every batch B and context C: B sequences whose KV cache holds C positions of synthetic
// random K/V (written directly, not by running prefill), then --iters timed decode steps of one
// token per sequence at position C (after warm-up; each step rewrites the same slot, so the context
// stays C). Reported per (B, C): step latency, tokens/s, bytes moved per step (this shard's weights
// + KV read/write + an activation estimate), achieved GB/s and its fraction of the device's copy
// bandwidth measured in the same run. Also: prefill of one prompt per --prompt-len.
//
// Sweeps: --tp 1,2,4,8 runs rank --rank's shard at each N in turn (one model at a time, the previous
// one freed first). --gen-len 128,512 replaces --context by generation lengths: for every prompt
// length P and generation length G the decode step is timed at context P + G/2, which is the mean
// step time over the G steps of that generation (contexts P .. P+G-1) because a step's time is
// linear in its context (the KV read grows by one position per step, all else is fixed).
#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/error.h"
#include "kernels/cuda_backend.h"
#include "kernels/ops.h"
#include "launch/command.h"
#include "launch/model_source.h"
#include "runtime/families/architecture.h"
#include "runtime/model/local_shard_communicator.h"
#include "runtime/model/model.h"
#include "runtime/planning/memory_plan.h"
#include "launch/bench_gemv.h"
#include "launch/bench_load.h"
#include "runtime/planning/scaling_model.h"

namespace tpserve::launch {

namespace {

using Clock = std::chrono::steady_clock;

struct BenchOptions {
  ModelSource source;
  std::string tp = "1";
  int rank = 0;
  int layers = 0;  // 0: all
  std::string device = "cpu";
  std::string dtype;  // default: f32 on cpu, bf16 on cuda
  std::string batch = "1,8,32";
  std::string context = "128,1024";
  std::string prompt_len = "512";
  std::string gen_len;  // empty: decode at each --context
  int iters = 20;
  int warmup = 3;
  int block_size = 16;
  std::string kv_cache_dtype = "auto";  // auto | int8
  std::string gpu_mem;  // default: 80GiB on cuda, physical memory on cpu
  double gpu_util = 0.90;
  uint64_t seed = 1234;
  std::string json_path;
  std::string csv_path;
  GemvBenchOptions gemv;  // --gemv: the kernel comparison alone, no model
  std::string load_dir;   // --load: checkpoint load throughput under mpirun, no model run
  int load_threads = 0;
};

struct DecodeResult {
  int tp = 1;
  int batch = 0;
  int context = 0;
  int prompt_len = 0;  // --gen-len sweeps: context = prompt_len + gen_len / 2; else = context
  int gen_len = 0;     // 0 without --gen-len
  bool skipped = false;
  std::string skip_reason;
  double step_ms = 0;
  double tokens_per_s = 0;
  int64_t weight_bytes = 0;      // weights read by the step
  int64_t kv_bytes = 0;          // KV read (positions 0..C) + written (position C)
  int64_t activation_bytes = 0;  // estimate, see activation_bytes_per_token
  int64_t bytes_per_step = 0;
  double achieved_gbps = 0;
  double fraction_of_copy_bw = 0;
};

struct PrefillResult {
  int tp = 1;
  int tokens = 0;
  double ms = 0;
  double tokens_per_s = 0;
};

// One decode point: the context timed and the (prompt, generation) it stands for.
struct DecodePoint {
  int context = 0;
  int prompt_len = 0;
  int gen_len = 0;
};

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

int32_t blocks_for(int64_t positions, int block_size) {
  return static_cast<int32_t>((positions + block_size - 1) / block_size);
}

// memcpy bandwidth of this host, counted like cuda_copy_bandwidth_gbps: 2 * bytes per copy (read
// + write), median of 5 copies after one warm-up.
double host_copy_bandwidth_gbps(size_t bytes) {
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  std::vector<double> seconds;
  for (int i = 0; i < 6; ++i) {
    const auto start = Clock::now();
    std::memcpy(dst.data(), src.data(), bytes);
    const double s = seconds_since(start);
    if (i > 0) seconds.push_back(s);
    src[static_cast<size_t>(i)] = dst[bytes - 1 - static_cast<size_t>(i)];  // keep the copy live
  }
  std::sort(seconds.begin(), seconds.end());
  return 2.0 * static_cast<double>(bytes) / seconds[seconds.size() / 2] / 1e9;
}

int64_t physical_memory_bytes() {
  return static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<int64_t>(sysconf(_SC_PAGE_SIZE));
}

runtime::StepInput decode_step(int batch, int context, int block_size) {
  runtime::StepInput step;
  const int32_t blocks = blocks_for(context + 1, block_size);
  step.max_blocks_per_seq = blocks;
  for (int s = 0; s < batch; ++s) {
    step.token_ids.push_back((s * 7919 + 11) % 1000);
    step.token_seq.push_back(s);
    step.token_pos.push_back(context);
    step.logit_rows.push_back(s);
    for (int32_t b = 0; b < blocks; ++b) step.block_tables.push_back(s * blocks + b);
  }
  return step;
}

runtime::StepInput prefill_step(int prompt_len, int block_size) {
  runtime::StepInput step;
  const int32_t blocks = blocks_for(prompt_len, block_size);
  step.max_blocks_per_seq = blocks;
  for (int t = 0; t < prompt_len; ++t) {
    step.token_ids.push_back((t * 7919 + 11) % 1000);
    step.token_seq.push_back(0);
    step.token_pos.push_back(t);
  }
  for (int32_t b = 0; b < blocks; ++b) step.block_tables.push_back(b);
  step.logit_rows.push_back(prompt_len - 1);
  return step;
}

// Mean seconds of `iters` calls of forward(step) after `warmup` untimed ones; the backend is
// synchronized before the clock starts and after the last step.
double time_steps(runtime::Model& model, kernels::Backend& backend, const runtime::StepInput& step,
                  int warmup, int iters) {
  std::vector<float> logits;
  for (int i = 0; i < warmup; ++i) model.forward(step, logits);
  backend.synchronize();
  const auto start = Clock::now();
  for (int i = 0; i < iters; ++i) model.forward(step, logits);
  backend.synchronize();
  return seconds_since(start) / iters;
}

std::unique_ptr<kernels::Backend> make_backend(const BenchOptions& options, DType dtype) {
  if (options.device == "cpu") {
    if (dtype != DType::kF32) {
      raise(ErrorCode::kInvalidArgument, "--dtype {}: the CPU backend computes in f32 only",
            options.dtype);
    }
    return kernels::make_cpu_backend();
  }
  if (options.device == "cuda") {
    if (kernels::cuda_device_count() == 0) {
      raise(ErrorCode::kUnavailable, "--device cuda: no CUDA device found (or tpserve was built "
            "without CUDA); use --device cpu");
    }
    if (dtype == DType::kF32) {
      raise(ErrorCode::kInvalidArgument, "--dtype f32: the CUDA backend computes in bf16 or fp16");
    }
    return kernels::make_cuda_backend(0, dtype);
  }
  raise(ErrorCode::kInvalidArgument, "--device: '{}' is not cpu or cuda", options.device);
}

// JSON: the run's settings, then per TP size its shard ("shards") and prefill timings
// ("prefills"), and every decode row ("decode", each with its tp). For readers of single-TP files
// the first shard's tp, shard_weight_bytes, kv_bytes_per_token and first prefill stay at the top.
// CSV: one line per decode row.
void write_outputs(const BenchOptions& options, const nlohmann::json& header,
                   const std::vector<DecodeResult>& results) {
  if (!options.json_path.empty()) {
    nlohmann::json document = header;
    document["decode"] = nlohmann::json::array();
    for (const DecodeResult& r : results) {
      nlohmann::json row = {{"tp", r.tp}, {"batch", r.batch}, {"context", r.context},
                            {"prompt_len", r.prompt_len}, {"gen_len", r.gen_len},
                            {"skipped", r.skipped}};
      if (r.skipped) {
        row["skip_reason"] = r.skip_reason;
      } else {
        row.update({{"step_ms", r.step_ms}, {"tokens_per_s", r.tokens_per_s},
                    {"weight_bytes", r.weight_bytes}, {"kv_bytes", r.kv_bytes},
                    {"activation_bytes", r.activation_bytes}, {"bytes_per_step", r.bytes_per_step},
                    {"achieved_gbps", r.achieved_gbps},
                    {"fraction_of_copy_bandwidth", r.fraction_of_copy_bw}});
      }
      document["decode"].push_back(row);
    }
    std::ofstream file(options.json_path);
    if (!file) raise(ErrorCode::kInvalidArgument, "--json: cannot write {}", options.json_path);
    file << document.dump(2) << "\n";
  }
  if (!options.csv_path.empty()) {
    std::ofstream file(options.csv_path);
    if (!file) raise(ErrorCode::kInvalidArgument, "--csv: cannot write {}", options.csv_path);
    file << "model,device,dtype,tp,rank,layers,batch,context,prompt_len,gen_len,step_ms,"
            "tokens_per_s,weight_bytes,kv_bytes,activation_bytes,bytes_per_step,achieved_gbps,"
            "copy_bandwidth_gbps,fraction_of_copy_bandwidth,skipped\n";
    for (const DecodeResult& r : results) {
      file << fmt::format("{},{},{},{},{},{},{},{},{},{},{:.4f},{:.2f},{},{},{},{},{:.2f},{:.2f},"
                          "{:.4f},{}\n",
                          header["model"].get<std::string>(), options.device,
                          header["dtype"].get<std::string>(), r.tp, options.rank,
                          header["layers"].get<int>(), r.batch, r.context, r.prompt_len, r.gen_len,
                          r.step_ms, r.tokens_per_s, r.weight_bytes, r.kv_bytes, r.activation_bytes,
                          r.bytes_per_step, r.achieved_gbps,
                          header["copy_bandwidth_gbps"].get<double>(), r.fraction_of_copy_bw,
                          r.skipped ? 1 : 0);
    }
  }
}

// What every TP size of a run shares.
struct BenchRun {
  runtime::PlanModel model;     // the full shape, for names and the layer count
  runtime::ModelConfig config;  // with --layers applied
  DType dtype = DType::kF32;
  int element = 4;
  runtime::KvCacheDtype kv_dtype = runtime::KvCacheDtype::kAuto;
  std::vector<int> batches;
  std::vector<int> prompt_lens;
  std::vector<DecodePoint> points;
  kernels::Backend* backend = nullptr;
  double copy_gbps = 0;
};

// Builds rank options.rank's shard at TP=tp, times its prefills and decode points, prints its
// section of the table and appends its rows; the shard is freed on return.
nlohmann::json run_shard(const BenchOptions& options, const BenchRun& run, int tp,
                         std::vector<DecodeResult>& results, std::vector<PrefillResult>& prefills) {
  const runtime::ModelConfig& config = run.config;
  const runtime::RankShape shape = runtime::rank_shape(config, tp, options.rank);
  const int element = run.element;
  const int max_batch = *std::max_element(run.batches.begin(), run.batches.end());
  const int max_prompt = *std::max_element(run.prompt_lens.begin(), run.prompt_lens.end());
  int max_context = 0;
  for (const DecodePoint& p : run.points) max_context = std::max(max_context, p.context);

  // Workspace from the largest batch (and the prompt); KV pool from B x C, capped by the plan.
  runtime::ModelOptions model_options;
  model_options.block_size = options.block_size;
  model_options.kv_cache_dtype = run.kv_dtype;
  model_options.max_tokens_per_step = std::max(max_batch, max_prompt);
  model_options.max_seqs = max_batch;
  model_options.max_logit_rows = max_batch;
  model_options.max_blocks_per_seq =
      std::max(blocks_for(max_context + 1, options.block_size), blocks_for(max_prompt, options.block_size));
  int64_t needed_blocks = blocks_for(max_prompt, options.block_size);
  for (int b : run.batches) {
    for (const DecodePoint& p : run.points) {
      needed_blocks = std::max<int64_t>(needed_blocks, int64_t{b} * blocks_for(p.context + 1, options.block_size));
    }
  }
  runtime::MemoryPlanOptions plan_options;
  plan_options.tp_size = tp;
  plan_options.dtype_bytes = element;
  plan_options.gpu_memory_bytes = !options.gpu_mem.empty() ? runtime::parse_byte_size(options.gpu_mem)
                                  : options.device == "cuda" ? runtime::parse_byte_size("80GiB")
                                                             : physical_memory_bytes();
  plan_options.gpu_utilization = options.gpu_util;
  plan_options.model = model_options;
  runtime::PlanModel layered = run.model;
  layered.config = config;
  const runtime::MemoryPlan plan = runtime::plan_memory(layered, plan_options);
  if (plan.kv_blocks < blocks_for(max_prompt, options.block_size)) {
    raise(ErrorCode::kResourceExhausted, "bench: TP={}: {} (try --layers, a larger --tp, or --gpu-mem)",
          tp, plan.message.empty() ? "no room for the prompt's KV blocks" : plan.message);
  }
  model_options.num_kv_blocks = static_cast<int32_t>(std::min<int64_t>(needed_blocks, plan.kv_blocks));

  std::fprintf(stderr, "bench: %s, %d of %d layers, rank %d of TP=%d, %s %s; weights %s (the "
               "largest rank's), workspace %s, KV pool %d blocks of %s (%s); copy bandwidth %.1f "
               "GB/s\n",
               run.model.name.c_str(), config.num_layers, run.model.config.num_layers, options.rank,
               tp, options.device.c_str(), std::string(dtype_name(run.dtype)).c_str(),
               runtime::format_bytes(plan.weight_bytes).c_str(),
               runtime::format_bytes(plan.workspace_bytes).c_str(), model_options.num_kv_blocks,
               runtime::kv_cache_dtype_name(run.kv_dtype, run.dtype).c_str(),
               runtime::format_bytes(static_cast<double>(model_options.num_kv_blocks) * plan.kv_block_bytes).c_str(),
               run.copy_gbps);
  kernels::Backend& backend = *run.backend;
  runtime::LocalShardCommunicator comm(options.rank, tp, backend);
  runtime::Model shard(config, shape, backend, comm, model_options);
  const auto load_start = Clock::now();
  int last_decile = -1;
  shard.load_synthetic(options.seed, [&](const runtime::LoadProgress& p) {
    const int decile = p.bytes_total == 0 ? 10 : static_cast<int>(10 * p.bytes_done / p.bytes_total);
    if (decile == last_decile) return;
    last_decile = decile;
    std::fprintf(stderr, "bench: synthetic weights %3d%%\n", decile * 10);
  });
  shard.fill_kv_cache_synthetic(options.seed + 1);
  backend.synchronize();
  std::fprintf(stderr, "bench: weights and KV cache ready in %.1f s\n", seconds_since(load_start));

  // Prefill of one prompt per length.
  const int prefill_iters = std::max(1, std::min(options.iters, 5));
  const size_t first_prefill = prefills.size();
  for (int prompt_len : run.prompt_lens) {
    std::fprintf(stderr, "bench: TP=%d prefill of %d tokens\n", tp, prompt_len);
    const double prefill_s = time_steps(shard, backend, prefill_step(prompt_len, options.block_size),
                                        1, prefill_iters);
    prefills.push_back({tp, prompt_len, prefill_s * 1e3, prompt_len / prefill_s});
  }

  // Bytes every decode step reads regardless of B and C: all of this shard's weights but the
  // embedding table, of which only the B looked-up rows are read (when tied, lm_head reads it all).
  const runtime::Architecture* architecture = runtime::find_architecture(config.architecture);
  int64_t embed_bytes = 0;
  for (const runtime::WeightShard& w : runtime::plan_weights(config, *architecture, shape)) {
    if (w.name == "embed") embed_bytes = w.numel() * element;
  }
  const int64_t weight_bytes = static_cast<int64_t>(shard.weight_bytes());
  const int64_t kv_per_token = runtime::kv_bytes_per_token(config, shape, element, run.kv_dtype);
  const int64_t act_per_token = runtime::activation_bytes_per_token(config, shape, element);

  const size_t first_row = results.size();
  for (const DecodePoint& point : run.points) {
    for (int batch : run.batches) {
      DecodeResult r;
      r.tp = tp;
      r.batch = batch;
      r.context = point.context;
      r.prompt_len = point.prompt_len;
      r.gen_len = point.gen_len;
      const int64_t blocks = int64_t{batch} * blocks_for(point.context + 1, options.block_size);
      if (blocks > model_options.num_kv_blocks) {
        r.skipped = true;
        r.skip_reason = fmt::format("needs {} KV blocks; the plan leaves {}", blocks,
                                    model_options.num_kv_blocks);
        std::fprintf(stderr, "bench: TP=%d B=%d C=%d skipped: %s\n", tp, batch, point.context,
                     r.skip_reason.c_str());
        results.push_back(r);
        continue;
      }
      std::fprintf(stderr, "bench: TP=%d decode B=%d C=%d\n", tp, batch, point.context);
      const double step_s = time_steps(shard, backend, decode_step(batch, point.context, options.block_size),
                                       options.warmup, options.iters);
      r.step_ms = step_s * 1e3;
      r.tokens_per_s = batch / step_s;
      r.weight_bytes = weight_bytes - (config.tie_word_embeddings ? 0 : embed_bytes) +
                       int64_t{batch} * config.hidden_size * element;
      r.kv_bytes = int64_t{batch} * (point.context + 2) * kv_per_token;  // read 0..C, write C
      r.activation_bytes = int64_t{batch} * act_per_token;
      r.bytes_per_step = r.weight_bytes + r.kv_bytes + r.activation_bytes;
      r.achieved_gbps = r.bytes_per_step / step_s / 1e9;
      r.fraction_of_copy_bw = r.achieved_gbps / run.copy_gbps;
      results.push_back(r);
    }
  }

  std::printf("%s: rank %d of TP=%d, %d layers, %s %s, KV cache %s, weights %s on this rank; copy "
              "bandwidth %.1f GB/s; no communication (LocalShardCommunicator); KV filled with "
              "synthetic values, not prefill\n",
              run.model.name.c_str(), options.rank, tp, config.num_layers,
              options.device.c_str(), std::string(dtype_name(run.dtype)).c_str(),
              runtime::kv_cache_dtype_name(run.kv_dtype, run.dtype).c_str(),
              runtime::format_bytes(weight_bytes).c_str(), run.copy_gbps);
  // An uneven split: where this rank stands against the largest shard (what every step waits for).
  const runtime::RankSplit& split = plan.ranks[static_cast<size_t>(options.rank)];
  if (plan.imbalance > 1.0) {
    std::printf("uneven split: this rank's decode bytes are %.3f of the largest rank's; plan's "
                "imbalance (largest / mean) %.3f\n",
                static_cast<double>(split.decode_bytes) /
                    static_cast<double>(std::max_element(plan.ranks.begin(), plan.ranks.end(),
                                                         [](const auto& a, const auto& b) {
                                                           return a.decode_bytes < b.decode_bytes;
                                                         })->decode_bytes),
                plan.imbalance);
  }
  for (size_t i = first_prefill; i < prefills.size(); ++i) {
    std::printf("prefill: %d tokens in %.3f ms (%.1f tokens/s)\n", prefills[i].tokens,
                prefills[i].ms, prefills[i].tokens_per_s);
  }
  const bool gen_sweep = !options.gen_len.empty();
  std::printf("%6s %8s %11s %12s %13s %10s %9s%s\n", "batch", "context", "step ms", "tokens/s",
              "bytes/step", "GB/s", "of copy", gen_sweep ? "  prompt    gen" : "");
  for (size_t i = first_row; i < results.size(); ++i) {
    const DecodeResult& r = results[i];
    const std::string tail = gen_sweep ? fmt::format(" {:7d} {:6d}", r.prompt_len, r.gen_len) : "";
    if (r.skipped) {
      std::printf("%6d %8d  skipped: %s%s\n", r.batch, r.context, r.skip_reason.c_str(), tail.c_str());
      continue;
    }
    std::printf("%6d %8d %11.3f %12.1f %13s %10.1f %8.1f%%%s\n", r.batch, r.context, r.step_ms,
                r.tokens_per_s, runtime::format_bytes(r.bytes_per_step).c_str(), r.achieved_gbps,
                100 * r.fraction_of_copy_bw, tail.c_str());
  }
  std::fflush(stdout);
  return {{"tp", tp}, {"rank", options.rank}, {"shard_weight_bytes", weight_bytes},
          {"kv_bytes_per_token", kv_per_token}, {"workspace_bytes", plan.workspace_bytes},
          {"kv_pool_blocks", model_options.num_kv_blocks}, {"imbalance", plan.imbalance},
          {"rank_decode_bytes", split.decode_bytes}};
}

std::vector<int> positive_list(const std::string& text, const char* flag) {
  std::vector<int> values = parse_int_list(text, flag);
  for (int v : values) {
    if (v < 1) raise(ErrorCode::kInvalidArgument, "{} {}: values must be >= 1", flag, text);
  }
  return values;
}

int run_bench(const BenchOptions& options) {
  // A refused --kv-cache-dtype says so before any device is looked for.
  const runtime::KvCacheDtype kv_dtype = parse_kv_cache_dtype(options.kv_cache_dtype);
  if (options.device == "cuda" && kernels::cuda_device_count() == 0) {
    raise(ErrorCode::kUnavailable, "--device cuda: no CUDA device found (or tpserve was built "
          "without CUDA); use --device cpu");
  }
  BenchRun run;
  run.model = read_model_source(options.source);
  if (run.model.config.moe.any_sparse()) {
    raise(ErrorCode::kUnimplemented, "{}: Qwen2-MoE forward not implemented yet in bench "
          "(tpserve plan counts its weights)", run.model.name);
  }
  run.config = run.model.config;
  runtime::ModelConfig& config = run.config;
  if (options.layers > 0) config.num_layers = std::min(config.num_layers, options.layers);
  const std::vector<int> tp_sizes = positive_list(options.tp, "--tp");
  for (int tp : tp_sizes) {
    if (options.rank < 0 || options.rank >= tp) {
      raise(ErrorCode::kInvalidArgument, "--rank {}: must be in [0, --tp {})", options.rank, tp);
    }
    runtime::rank_shape(config, tp, options.rank);  // every N checked before any is run
  }
  run.dtype = parse_compute_dtype(
      options.dtype.empty() ? (options.device == "cuda" ? "bf16" : "f32") : options.dtype);
  run.element = dtype_size(run.dtype);
  run.kv_dtype = kv_dtype;
  run.batches = positive_list(options.batch, "--batch");
  run.prompt_lens = positive_list(options.prompt_len, "--prompt-len");
  if (options.gen_len.empty()) {
    for (int c : parse_int_list(options.context, "--context")) run.points.push_back({c, c, 0});
  } else {
    for (int p : run.prompt_lens) {
      for (int g : positive_list(options.gen_len, "--gen-len")) run.points.push_back({p + g / 2, p, g});
    }
  }
  int max_context = 0;
  for (const DecodePoint& p : run.points) max_context = std::max(max_context, p.context);
  const int max_prompt = *std::max_element(run.prompt_lens.begin(), run.prompt_lens.end());
  if (max_context >= config.max_position_embeddings || max_prompt > config.max_position_embeddings) {
    raise(ErrorCode::kOutOfRange, "--context/--gen-len {} / --prompt-len {}: positions must stay "
          "below the context length {} (max_position_embeddings)", max_context, max_prompt,
          config.max_position_embeddings);
  }

  auto backend = make_backend(options, run.dtype);
  run.backend = backend.get();
  if (config.quant.enabled() && !backend->has_quantized_linear()) {
    raise(ErrorCode::kUnimplemented, "--quant {}: quantized linear on {}: not implemented yet",
          options.source.quant, options.device);
  }
  run.copy_gbps = options.device == "cuda" ? kernels::cuda_copy_bandwidth_gbps(0, size_t{1} << 28)
                                           : host_copy_bandwidth_gbps(size_t{1} << 28);

  std::vector<DecodeResult> results;
  std::vector<PrefillResult> prefills;
  nlohmann::json shards = nlohmann::json::array();
  for (int tp : tp_sizes) shards.push_back(run_shard(options, run, tp, results, prefills));

  nlohmann::json prefill_rows = nlohmann::json::array();
  for (const PrefillResult& p : prefills) {
    prefill_rows.push_back({{"tp", p.tp}, {"tokens", p.tokens}, {"ms", p.ms},
                            {"tokens_per_s", p.tokens_per_s}});
  }
  const nlohmann::json header = {
      {"model", run.model.name},
      {"architecture", config.architecture},
      {"quant", options.source.quant},
      {"group_size", config.quant.enabled() ? options.source.group_size : 0},
      {"device", options.device},
      {"dtype", std::string(dtype_name(run.dtype))},
      {"tp", tp_sizes.front()},
      {"tp_sizes", tp_sizes},
      {"rank", options.rank},
      {"layers", config.num_layers},
      {"model_layers", run.model.config.num_layers},
      {"block_size", options.block_size},
      {"kv_cache_dtype", runtime::kv_cache_dtype_name(run.kv_dtype, run.dtype)},
      {"iters", options.iters},
      {"warmup", options.warmup},
      {"shard_weight_bytes", shards.front()["shard_weight_bytes"]},
      {"kv_bytes_per_token", shards.front()["kv_bytes_per_token"]},
      {"shards", shards},
      {"copy_bandwidth_gbps", run.copy_gbps},
      {"communication", "none: LocalShardCommunicator (per-shard compute only)"},
      {"kv_fill", "synthetic random K/V written directly (no prefill)"},
      {"decode_points", options.gen_len.empty()
                            ? "--context: decode at context C (prompt_len = C, gen_len = 0)"
                            : "--gen-len: decode at context P + G/2, the mean step of a G-token "
                              "generation after a P-token prompt"},
      {"bytes_counted", "shard weights (embedding: only the B rows read) + KV read 0..C and write "
                        "C + activation estimate (norms, residuals, qkv, attention, MLP, logits)"},
      {"prefill", prefill_rows.front()},
      {"prefills", prefill_rows}};
  write_outputs(options, header, results);
  return 0;
}

}  // namespace

void register_bench_command(CLI::App& app, CommandRunner& runner) {
  auto options = std::make_shared<BenchOptions>();
  CLI::App* command = app.add_subcommand(
      "bench", "Decode/prefill speed of one rank's shard at TP=N, synthetic weights, one process");
  add_model_source_options(*command, options->source);
  command->add_option("--tp", options->tp,
                      "Tensor-parallel size to shard for, or a list run in turn: 1,2,4,8");
  command->add_option("--rank", options->rank, "Which rank's shard to run (default 0)");
  command->add_option("--layers", options->layers, "Run only the first K layers (default all)")
      ->check(CLI::Range(0, 100000));
  command->add_option("--device", options->device, "cpu or cuda");
  command->add_option("--dtype", options->dtype, "bf16, fp16 or f32 (default f32 on cpu, bf16 on cuda)");
  command->add_option("--batch", options->batch, "Batch sizes, e.g. 1,2,4,...,256");
  command->add_option("--context", options->context, "Context lengths, e.g. 128,1024,4096");
  command->add_option("--prompt-len", options->prompt_len,
                      "Prompt lengths of the prefill timings, e.g. 128,2048");
  command->add_option("--gen-len", options->gen_len,
                      "Generation lengths, e.g. 128,512: decode is timed at context prompt + gen/2 "
                      "(the mean step of that generation) instead of at each --context");
  command->add_option("--iters", options->iters, "Timed steps per (batch, context)")
      ->check(CLI::Range(1, 100000));
  command->add_option("--warmup", options->warmup, "Untimed steps before them")
      ->check(CLI::Range(0, 1000));
  command->add_option("--block-size", options->block_size, "KV cache positions per block")
      ->check(CLI::Range(1, 1024));
  command->add_option("--kv-cache-dtype", options->kv_cache_dtype,
                      "KV cache element type: auto (the compute dtype) or int8 (cpu and cuda)");
  command->add_option("--gpu-mem", options->gpu_mem,
                      "Device memory for the plan (default 80GiB on cuda, RAM on cpu)");
  command->add_option("--gpu-util", options->gpu_util, "Fraction of it to use")
      ->check(CLI::Range(0.01, 1.0));
  command->add_option("--seed", options->seed, "Seed of the synthetic weights");
  command->add_option("--json", options->json_path, "Write results as JSON to this file");
  command->add_option("--csv", options->csv_path, "Write results as CSV to this file");
  command->add_option("--gemv", options->gemv.shape,
                      "Instead of a model: the quantized linear of an OUTxIN matrix vs the float "
                      "one on it dequantized (bytes/s of each), e.g. 11008x4096; cpu: batch 1 vs "
                      "OpenBLAS f32; cuda: each of --gemv-tokens vs cuBLASLt, a comma-separated "
                      "list of shapes");
  command->add_option("--gemv-bits", options->gemv.bits, "--gemv code width: 4 or 8");
  command->add_option("--gemv-group", options->gemv.group_size, "--gemv input columns per group");
  command->add_option("--gemv-tokens", options->gemv.tokens,
                      "--gemv on cuda: rows of x to time, comma-separated (e.g. 1,4,16,64)");
  command->add_option("--load", options->load_dir,
                      "Instead of a model run: load the checkpoint in DIR, each rank of mpirun -np N "
                      "its TP=N shard, and report GB/s against the page-cache read and memory-copy "
                      "(and pinned host-to-device) bandwidths measured in the same run, peak RSS "
                      "and bytes read per rank");
  command->add_option("--load-threads", options->load_threads,
                      "--load: threads per rank reading the checkpoint (default: cores, at most 8)")
      ->check(CLI::Range(0, 256));
  command->callback([options, &runner] {
    runner = [options] {
      if (!options->load_dir.empty()) {
        LoadBenchOptions load;
        load.model_dir = options->load_dir;
        load.device = options->device;
        load.dtype = options->dtype;
        load.threads = options->load_threads;
        load.json_path = options->json_path;
        return run_load_bench(load);
      }
      if (options->gemv.shape.empty()) return run_bench(*options);
      GemvBenchOptions gemv = options->gemv;
      gemv.iters = options->iters;
      gemv.device = options->device;
      gemv.dtype = options->dtype;
      gemv.json_path = options->json_path;
      return run_gemv_bench(gemv);
    };
  });
}

}  // namespace tpserve::launch
