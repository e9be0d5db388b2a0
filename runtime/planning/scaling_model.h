// A model of one tensor-parallel decode step at TP=N: this rank's compute (its shard's bytes over
// an effective memory bandwidth, or a measured per-shard step time from `tpserve bench`) plus the
// collectives the forward pass issues (runtime/model/model.cc):
//
//   embedding      1 all-reduce of B x hidden          (vocab-parallel embedding)
//   per layer      2 all-reduces of B x hidden         (after the row-parallel o and down GEMMs)
//   logits         1 all-gather of B x padded vocab    (each rank contributes B x vocab/N)
//   step plan      2 broadcasts of a few hundred bytes (rank 0 -> all, runtime/model/step.cc)
//
// each costed on a ring with per-step latency a and bus bandwidth b (NCCL's busbw):
//   all-reduce  t = 2(N-1)/N * bytes / b + 2(N-1) a
//   all-gather  t =  (N-1)/N * bytes / b +  (N-1) a     (bytes: the gathered result)
//   broadcast   t = ceil(log2 N) * (bytes / b + a)       (binomial tree)
// Compute and communication are added, not overlapped: the forward pass waits on each
// all-reduce before the residual add. `tpserve scale` prints it; docs/scaling-qwen2-72b.md uses it.
#pragma once

#include <cstdint>
#include <optional>

#include "runtime/config/model_config.h"
#include "runtime/model/model.h"
#include "runtime/model/weight_plan.h"

namespace tpserve::runtime {

// Defaults: H100 SXM with NVLink 4 (an assumption, not a measurement of ours). NVLink 4 gives a
// GPU 900 GB/s both directions, 450 GB/s each way; NCCL's all_reduce_perf reaches a busbw of about
// 360 GB/s on 8 x H100 SXM for large messages (NVIDIA's published nccl-tests figures are in the
// 350-480 GB/s range depending on NVLS). Small-message latency of NCCL's ring is a few
// microseconds per step; 8 us per step is a round, deliberately pessimistic figure.
struct Interconnect {
  double bus_gbps = 360.0;  // bytes per second per rank on the ring, / 1e9
  double latency_us = 8.0;  // per ring step (one send + receive of a chunk)
};

double ring_all_reduce_seconds(double bytes, int n, const Interconnect& link);
double ring_all_gather_seconds(double result_bytes, int n, const Interconnect& link);
double tree_broadcast_seconds(double bytes, int n, const Interconnect& link);

// Bytes one decode step of B sequences at context C moves through this rank's memory, counted
// as `tpserve bench` counts them: every weight of the shard except the embedding table, of which
// only the B looked-up rows are read (tied: lm_head reads all of it); KV read for positions 0..C
// and written at C (counted as C + 2 positions); an activation estimate.
struct DecodeBytes {
  int64_t weight = 0;
  int64_t kv = 0;
  int64_t activation = 0;
  int64_t total() const { return weight + kv + activation; }
};

// Activation traffic per token, an estimate (element counts x dtype): per layer two RMSNorms (read
// + write hidden, 4H), two residual adds (read 2H, write H: 6H), the o and down outputs (2H), QKV
// written, RoPE'd and read (3 x qkv width), attention output written and read plus q read (3 x q
// width), gate|up written and read and the SiLU product written and read (6 x local
// intermediate); then the logits row of this shard, written once and copied by the all-gather into
// N slots (read + write each).
int64_t activation_bytes_per_token(const ModelConfig& config, const RankShape& shape, int element);

// The KV cache in `kv_dtype` (kv_bytes_per_token: int8 codes + scales, or the compute dtype).
DecodeBytes decode_bytes(const ModelConfig& config, const RankShape& shape, int batch,
                         int64_t context, int element, KvCacheDtype kv_dtype);

struct CommCost {
  int all_reduces = 0;            // 2 per layer + the embedding's
  double all_reduce_bytes = 0;    // each: B x hidden x element
  double all_reduce_s = 0;        // all of them together
  double all_gather_bytes = 0;    // the gathered logits: B x padded vocab rows x N x element
  double all_gather_s = 0;
  double broadcast_s = 0;         // the step plan
  double total_s() const { return all_reduce_s + all_gather_s + broadcast_s; }
};

// `element`: bytes per value the collectives carry (the compute dtype: bf16 on GPUs, f32 on CPU).
CommCost decode_comm(const ModelConfig& config, int tp_size, int batch, int element,
                     const Interconnect& link);

struct ScalingOptions {
  int tp_size = 1;
  int batch = 1;
  int64_t context = 1024;
  int element = 2;                 // bytes of the compute dtype
  KvCacheDtype kv_dtype = KvCacheDtype::kAuto;
  Interconnect link;
  double hbm_gbps = 3350.0;        // H100 SXM HBM3 peak (NVIDIA's data sheet)
  double hbm_efficiency = 0.8;     // fraction of it a decode step's streams achieve
  // Measured per-shard step time (`tpserve bench`, no communication): used instead of the
  // bytes / bandwidth estimate when set.
  std::optional<double> measured_compute_s;
};

struct ScalingPrediction {
  DecodeBytes bytes;              // the slowest rank's shard (the most bytes)
  double roofline_compute_s = 0;  // bytes / (hbm_gbps x hbm_efficiency)
  double compute_s = 0;           // measured when given, else the roofline
  bool compute_measured = false;
  CommCost comm;
  double step_s = 0;              // compute + communication
  double tokens_per_s = 0;        // batch / step
};

// The slowest rank's shard: the one with the most decode bytes. Under an uneven split that is
// rank 0 (split_range gives it a largest part; `tpserve bench` runs it by default) unless another
// rank holds more KV heads, where its query heads straddle two KV groups.
ScalingPrediction predict_decode_step(const ModelConfig& config, const ScalingOptions& options);

}  // namespace tpserve::runtime
