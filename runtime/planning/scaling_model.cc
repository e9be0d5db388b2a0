#include "runtime/planning/scaling_model.h"

#include <cmath>

#include "common/error.h"
#include "runtime/families/architecture.h"
#include "runtime/model/model.h"

namespace tpserve::runtime {

double ring_all_reduce_seconds(double bytes, int n, const Interconnect& link) {
  if (n <= 1) return 0.0;
  const double steps = 2.0 * (n - 1);
  return steps / n * bytes / (link.bus_gbps * 1e9) + steps * link.latency_us * 1e-6;
}

double ring_all_gather_seconds(double result_bytes, int n, const Interconnect& link) {
  if (n <= 1) return 0.0;
  const double steps = n - 1.0;
  return steps / n * result_bytes / (link.bus_gbps * 1e9) + steps * link.latency_us * 1e-6;
}

double tree_broadcast_seconds(double bytes, int n, const Interconnect& link) {
  if (n <= 1) return 0.0;
  const double levels = std::ceil(std::log2(static_cast<double>(n)));
  return levels * (bytes / (link.bus_gbps * 1e9) + link.latency_us * 1e-6);
}

int64_t activation_bytes_per_token(const ModelConfig& c, const RankShape& s, int element) {
  const int64_t h = c.hidden_size;
  const int64_t q = static_cast<int64_t>(s.heads.num_q_heads()) * c.head_dim;
  const int64_t qkv = q + 2 * static_cast<int64_t>(s.heads.num_kv_heads()) * c.head_dim;
  const int64_t inter = s.intermediate.size();
  const int64_t per_layer = 12 * h + 3 * qkv + 3 * q + 6 * inter;
  return (c.num_layers * per_layer + s.vocab.padded_rows * (1 + 2 * s.tp_size)) * element;
}

DecodeBytes decode_bytes(const ModelConfig& c, const RankShape& s, int batch, int64_t context,
                         int element, KvCacheDtype kv_dtype) {
  const Architecture* architecture = find_architecture(c.architecture);
  if (architecture == nullptr) {
    raise(ErrorCode::kUnimplemented, "scaling model: no adapter for {}", c.architecture);
  }
  int64_t weight_bytes = 0;  // a quantized linear as its packed bytes (shard_bytes)
  int64_t embed_bytes = 0;
  for (const WeightShard& w : plan_weights(c, *architecture, s)) {
    weight_bytes += shard_bytes(w, c.quant, element);
    if (w.name == "embed") embed_bytes = w.numel() * element;
  }
  DecodeBytes bytes;
  bytes.weight = weight_bytes - (c.tie_word_embeddings ? 0 : embed_bytes) +
                 int64_t{batch} * c.hidden_size * element;
  bytes.kv = int64_t{batch} * (context + 2) * kv_bytes_per_token(c, s, element, kv_dtype);
  bytes.activation = int64_t{batch} * activation_bytes_per_token(c, s, element);
  return bytes;
}

CommCost decode_comm(const ModelConfig& c, int tp_size, int batch, int element,
                     const Interconnect& link) {
  CommCost cost;
  cost.all_reduces = 2 * c.num_layers + 1;
  cost.all_reduce_bytes = static_cast<double>(batch) * c.hidden_size * element;
  cost.all_reduce_s = cost.all_reduces * ring_all_reduce_seconds(cost.all_reduce_bytes, tp_size, link);
  const int64_t padded_rows = parallel::largest_part(c.vocab_size, tp_size);
  cost.all_gather_bytes = static_cast<double>(batch) * padded_rows * tp_size * element;
  cost.all_gather_s = ring_all_gather_seconds(cost.all_gather_bytes, tp_size, link);
  // Two broadcasts per step (the plan's size, then the plan): an int64 and, for decode, about
  // 8 + 4B + B x blocks words; their latency dominates, so both are costed as 512 bytes.
  cost.broadcast_s = 2 * tree_broadcast_seconds(512.0, tp_size, link);
  return cost;
}

ScalingPrediction predict_decode_step(const ModelConfig& config, const ScalingOptions& options) {
  if (options.batch < 1 || options.context < 0 || options.tp_size < 1) {
    raise(ErrorCode::kInvalidArgument, "scaling model: batch {} / context {} / TP {} out of range",
          options.batch, options.context, options.tp_size);
  }
  if (!(options.hbm_gbps > 0) || !(options.hbm_efficiency > 0) || !(options.link.bus_gbps > 0) ||
      !(options.link.latency_us >= 0)) {
    raise(ErrorCode::kInvalidArgument, "scaling model: bandwidths must be > 0 and latency >= 0");
  }
  // The step is the slowest rank's: every all-reduce waits for it. An uneven split's ranks differ
  // (rank 0 holds the most query heads and units, a rank whose heads straddle a KV group more KV).
  ScalingPrediction p;
  for (int rank = 0; rank < options.tp_size; ++rank) {
    const DecodeBytes bytes = decode_bytes(config, rank_shape(config, options.tp_size, rank),
                                           options.batch, options.context, options.element,
                                           options.kv_dtype);
    if (rank == 0 || bytes.total() > p.bytes.total()) p.bytes = bytes;
  }
  p.roofline_compute_s = static_cast<double>(p.bytes.total()) /
                         (options.hbm_gbps * options.hbm_efficiency * 1e9);
  p.compute_measured = options.measured_compute_s.has_value();
  p.compute_s = p.compute_measured ? *options.measured_compute_s : p.roofline_compute_s;
  p.comm = decode_comm(config, options.tp_size, options.batch, options.element, options.link);
  p.step_s = p.compute_s + p.comm.total_s();
  p.tokens_per_s = options.batch / p.step_s;
  return p;
}

}  // namespace tpserve::runtime
