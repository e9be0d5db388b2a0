#include "runtime/model.h"

#include <cmath>

#include "common/check.h"
#include "runtime/architecture.h"
#include "runtime/rope_tables.h"

namespace tpserve::runtime {

Model::Model(ModelConfig config, RankShape shape, kernels::Backend& backend,
             parallel::Communicator& comm, const ModelOptions& options)
    : config_(std::move(config)), shape_(shape), backend_(backend), comm_(comm),
      options_(options), element_size_(dtype_size(backend.compute_dtype())) {
  TPS_CHECK(comm.size() == shape.tp_size && comm.rank() == shape.rank,
            "rank shape {}/{} does not match the communicator {}/{}", shape.rank, shape.tp_size,
            comm.rank(), comm.size());
  if (options_.max_blocks_per_seq == 0) {
    options_.max_blocks_per_seq = blocks_for_positions(config_.max_position_embeddings);
  }
  const auto& h = shape_.heads;
  heads_ = {h.num_q_heads(), h.num_kv_heads(), config_.head_dim, h.q_head_begin, h.kv_head_begin,
            h.group_size};
  q_width_ = static_cast<int64_t>(h.num_q_heads()) * config_.head_dim;
  kv_width_ = static_cast<int64_t>(h.num_kv_heads()) * config_.head_dim;
  qkv_width_ = q_width_ + 2 * kv_width_;
  inter_ = shape_.intermediate.size();

  const std::vector<float> inv_freq = rope_inv_freq(config_.rope);
  inv_freq_ = DeviceBuffer(backend_, inv_freq.size() * sizeof(float));
  backend_.copy_to_device(inv_freq_.data(), inv_freq.data(), inv_freq.size() * sizeof(float));
  rope_.head_dim = config_.head_dim;
  rope_.rotary_dim = config_.rope.rotary_dim;
  rope_.interleaved = config_.rope.interleaved;
  rope_.inv_freq = inv_freq_.as<float>();
  allocate_workspace();
}

int32_t Model::blocks_for_positions(int64_t positions) const {
  return static_cast<int32_t>((positions + options_.block_size - 1) / options_.block_size);
}

void Model::allocate_workspace() {
  const auto rows = static_cast<size_t>(options_.max_tokens_per_step);
  const auto logit_rows = static_cast<size_t>(options_.max_logit_rows);
  const auto e = static_cast<size_t>(element_size_);
  const auto hidden = static_cast<size_t>(config_.hidden_size);
  const auto vocab_rows = static_cast<size_t>(shape_.vocab.padded_rows);
  hidden_ = DeviceBuffer(backend_, rows * hidden * e);
  normed_ = DeviceBuffer(backend_, rows * hidden * e);
  qkv_ = DeviceBuffer(backend_, rows * static_cast<size_t>(qkv_width_) * e);
  attn_ = DeviceBuffer(backend_, rows * static_cast<size_t>(q_width_) * e);
  proj_ = DeviceBuffer(backend_, rows * hidden * e);
  gate_up_ = DeviceBuffer(backend_, rows * 2 * static_cast<size_t>(inter_) * e);
  mlp_act_ = DeviceBuffer(backend_, rows * static_cast<size_t>(inter_) * e);
  final_rows_ = DeviceBuffer(backend_, logit_rows * hidden * e);
  logits_local_ = DeviceBuffer(backend_, logit_rows * vocab_rows * e);
  logits_all_ = DeviceBuffer(backend_, static_cast<size_t>(shape_.tp_size) * logit_rows * vocab_rows * e);
  gathered_host_.resize(static_cast<size_t>(shape_.tp_size) * logit_rows * vocab_rows);
  token_ids_ = DeviceBuffer(backend_, rows * sizeof(int32_t));
  token_seq_ = DeviceBuffer(backend_, rows * sizeof(int32_t));
  token_pos_ = DeviceBuffer(backend_, rows * sizeof(int32_t));
  block_tables_ = DeviceBuffer(backend_, static_cast<size_t>(options_.max_seqs) *
                                             static_cast<size_t>(options_.max_blocks_per_seq) *
                                             sizeof(int32_t));
  logit_rows_ = DeviceBuffer(backend_, logit_rows * sizeof(int32_t));

  // The paged KV cache: per layer, [num_blocks, block_size, local kv heads, head_dim] for K and V.
  const size_t cache_bytes = static_cast<size_t>(options_.num_kv_blocks) *
                             static_cast<size_t>(options_.block_size) *
                             static_cast<size_t>(kv_width_) * e;
  for (int layer = 0; layer < config_.num_layers; ++layer) {
    key_cache_.emplace_back(backend_, cache_bytes);
    value_cache_.emplace_back(backend_, cache_bytes);
  }
}

size_t Model::kv_cache_bytes() const {
  size_t total = 0;
  for (const DeviceBuffer& buffer : key_cache_) total += buffer.bytes();
  for (const DeviceBuffer& buffer : value_cache_) total += buffer.bytes();
  return total;
}

void Model::load(const Checkpoint& checkpoint,
                 const std::function<void(const LoadProgress&)>& progress, const LoraAdapter* lora) {
  const Architecture* architecture = find_architecture(config_.architecture);
  TPS_CHECK(architecture != nullptr, "no adapter for {}", config_.architecture);
  weights_.load(checkpoint, plan_weights(config_, *architecture, shape_), backend_, progress,
                lora);
  embed_ = weights_.get("embed");
  final_norm_ = weights_.get("final_norm");
  // Tied embeddings: lm_head is the embedding's vocab shard itself, not a copy.
  lm_head_ = config_.tie_word_embeddings ? embed_ : weights_.get("lm_head");
  layers_.clear();
  for (int layer = 0; layer < config_.num_layers; ++layer) {
    const auto w = [&](const char* part) { return weights_.find(layer_weight(layer, part)); };
    layers_.push_back({w("attn_norm"), w("qkv"), w("qkv_bias"), w("o"), w("o_bias"), w("mlp_norm"),
                       w("gate_up"), w("gate_up_bias"), w("down"), w("down_bias")});
  }
}

void Model::upload_step(const StepInput& step) {
  const int tokens = step.num_tokens();
  TPS_CHECK(tokens > 0 && tokens <= options_.max_tokens_per_step, "step of {} tokens (max {})",
            tokens, options_.max_tokens_per_step);
  TPS_CHECK(step.num_seqs() <= options_.max_seqs && step.max_blocks_per_seq <= options_.max_blocks_per_seq,
            "step of {} sequences x {} blocks exceeds the workspace", step.num_seqs(),
            step.max_blocks_per_seq);
  TPS_CHECK(static_cast<int>(step.logit_rows.size()) <= options_.max_logit_rows,
            "{} logit rows (max {})", step.logit_rows.size(), options_.max_logit_rows);
  const auto copy = [&](DeviceBuffer& dst, const std::vector<int32_t>& src) {
    backend_.copy_to_device(dst.data(), src.data(), src.size() * sizeof(int32_t));
  };
  copy(token_ids_, step.token_ids);
  copy(token_seq_, step.token_seq);
  copy(token_pos_, step.token_pos);
  copy(block_tables_, step.block_tables);
  copy(logit_rows_, step.logit_rows);
}

void Model::run_layer(int layer, const kernels::PagedBatch& batch, int tokens) {
  const LayerWeights& w = layers_[static_cast<size_t>(layer)];
  const int64_t hidden = config_.hidden_size;
  const bool first_rank = shape_.rank == 0;
  auto* qkv = static_cast<char*>(qkv_.data());
  void* q = qkv;
  void* k = qkv + q_width_ * element_size_;
  void* v = qkv + (q_width_ + kv_width_) * element_size_;

  // Attention block.
  backend_.rms_norm(hidden_.data(), w.attn_norm, tokens, hidden, config_.rms_norm_eps, normed_.data());
  backend_.linear(normed_.data(), w.qkv, w.qkv_bias, tokens, qkv_width_, hidden, q);
  backend_.rope(q, qkv_width_, token_pos_.as<int32_t>(), tokens, heads_.num_q_heads, rope_);
  backend_.rope(k, qkv_width_, token_pos_.as<int32_t>(), tokens, heads_.num_kv_heads, rope_);
  backend_.cache_write(k, v, qkv_width_, batch, heads_, key_cache_[layer].data(),
                       value_cache_[layer].data());
  const float scale = 1.0f / std::sqrt(static_cast<float>(config_.head_dim));
  backend_.attention(q, qkv_width_, key_cache_[layer].data(), value_cache_[layer].data(), batch,
                     heads_, scale, attn_.data());
  // Row-parallel: each rank holds a slice of the input columns; the bias is added once (rank 0)
  // so the all-reduce sums it exactly once.
  backend_.linear(attn_.data(), w.o, first_rank ? w.o_bias : nullptr, tokens, hidden, q_width_,
                  proj_.data());
  comm_.all_reduce_sum(proj_.data(), static_cast<size_t>(tokens * hidden), backend_.compute_dtype());
  backend_.add(hidden_.data(), proj_.data(), tokens * hidden);

  // MLP block.
  backend_.rms_norm(hidden_.data(), w.mlp_norm, tokens, hidden, config_.rms_norm_eps, normed_.data());
  backend_.linear(normed_.data(), w.gate_up, w.gate_up_bias, tokens, 2 * inter_, hidden,
                  gate_up_.data());
  backend_.silu_mul(gate_up_.data(), tokens, inter_, mlp_act_.data());
  backend_.linear(mlp_act_.data(), w.down, first_rank ? w.down_bias : nullptr, tokens, hidden,
                  inter_, proj_.data());
  comm_.all_reduce_sum(proj_.data(), static_cast<size_t>(tokens * hidden), backend_.compute_dtype());
  backend_.add(hidden_.data(), proj_.data(), tokens * hidden);
}

void Model::compute_logits(const StepInput& step, std::vector<float>& logits) {
  const int rows = static_cast<int>(step.logit_rows.size());
  const int64_t hidden = config_.hidden_size;
  const int64_t vocab_rows = shape_.vocab.padded_rows;
  logits.assign(static_cast<size_t>(rows) * static_cast<size_t>(config_.vocab_size), 0.0f);
  if (rows == 0) return;
  backend_.copy_rows(hidden_.data(), logit_rows_.as<int32_t>(), rows, hidden, final_rows_.data());
  backend_.rms_norm(final_rows_.data(), final_norm_, rows, hidden, config_.rms_norm_eps,
                    final_rows_.data());
  backend_.linear(final_rows_.data(), lm_head_, nullptr, rows, vocab_rows, hidden,
                  logits_local_.data());
  const size_t per_rank = static_cast<size_t>(rows) * static_cast<size_t>(vocab_rows);
  comm_.all_gather(logits_local_.data(), per_rank, backend_.compute_dtype(), logits_all_.data());
  backend_.download_f32(gathered_host_.data(), logits_all_.data(),
                        static_cast<int64_t>(per_rank) * shape_.tp_size);
  // gathered is [rank][row][padded vocab slice]; logits is [row][vocab].
  for (int rank = 0; rank < shape_.tp_size; ++rank) {
    const parallel::VocabShard slice = parallel::shard_vocab(config_.vocab_size, shape_.tp_size, rank);
    for (int row = 0; row < rows; ++row) {
      const float* src = gathered_host_.data() + rank * per_rank + static_cast<size_t>(row) * vocab_rows;
      float* dst = logits.data() + static_cast<size_t>(row) * config_.vocab_size + slice.begin;
      std::copy(src, src + (slice.end - slice.begin), dst);
    }
  }
}

void Model::forward(const StepInput& step, std::vector<float>& logits) {
  TPS_CHECK(!layers_.empty() || config_.num_layers == 0, "forward before load");
  upload_step(step);
  const int tokens = step.num_tokens();
  const kernels::PagedBatch batch{tokens,
                                  token_seq_.as<int32_t>(),
                                  token_pos_.as<int32_t>(),
                                  block_tables_.as<int32_t>(),
                                  step.max_blocks_per_seq,
                                  options_.block_size};
  // Vocab-parallel embedding: rows outside this rank's slice come out zero; the sum completes it.
  backend_.embedding(token_ids_.as<int32_t>(), tokens, embed_, shape_.vocab.begin,
                     shape_.vocab.end - shape_.vocab.begin, config_.hidden_size, hidden_.data());
  comm_.all_reduce_sum(hidden_.data(), static_cast<size_t>(tokens * config_.hidden_size),
                       backend_.compute_dtype());
  for (int layer = 0; layer < config_.num_layers; ++layer) run_layer(layer, batch, tokens);
  compute_logits(step, logits);
}

}  // namespace tpserve::runtime
