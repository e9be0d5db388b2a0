#include "runtime/model/model.h"

#include <algorithm>
#include <cmath>

#include "common/check.h"
#include "common/error.h"
#include "runtime/families/architecture.h"
#include "runtime/model/checkpoint_source.h"
#include "runtime/model/rope_tables.h"

namespace tpserve::runtime {

Model::Model(ModelConfig config, RankShape shape, kernels::Backend& backend,
             parallel::Communicator& comm, const ModelOptions& options)
    : config_(std::move(config)), shape_(shape), backend_(backend), comm_(comm),
      options_(options), element_size_(dtype_size(backend.compute_dtype())),
      moe_(config_, shape_, backend_, options_.max_tokens_per_step) {
  fit_quantization_to(config_, backend_);
  if (options_.kv_cache_dtype == KvCacheDtype::kInt8 && !backend_.has_int8_kv_cache()) {
    raise(ErrorCode::kUnimplemented, "--kv-cache-dtype int8: not implemented on {} yet",
          backend_.name());
  }
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
  rope_.attention_scaling = config_.rope.attention_factor;
  allocate_workspace();
  rope_.frequency_scale = frequency_scale_.bytes() != 0 ? frequency_scale_.as<float>() : nullptr;
  rope_.query_scale = query_scale_.bytes() != 0 ? query_scale_.as<float>() : nullptr;
}

int32_t Model::blocks_for_positions(int64_t positions) const {
  return static_cast<int32_t>((positions + options_.block_size - 1) / options_.block_size);
}

size_t WorkspaceSizes::total() const {
  return hidden + normed + qkv + attn + proj + gate_up + mlp_act + final_rows + logits_local +
         logits_all + token_ids + token_seq + token_pos + block_tables + logit_rows + moe +
         frequency_scale + query_scale;
}

WorkspaceSizes workspace_sizes(const ModelConfig& config, const RankShape& shape,
                               const ModelOptions& options, int element_size) {
  const auto rows = static_cast<size_t>(options.max_tokens_per_step);
  const auto logit_rows = static_cast<size_t>(options.max_logit_rows);
  const auto e = static_cast<size_t>(element_size);
  const auto hidden = static_cast<size_t>(config.hidden_size);
  const auto vocab_rows = static_cast<size_t>(shape.vocab.padded_rows);
  const auto q_width = static_cast<size_t>(shape.heads.num_q_heads()) * config.head_dim;
  const auto kv_width = static_cast<size_t>(shape.heads.num_kv_heads()) * config.head_dim;
  const auto inter = static_cast<size_t>(shape.intermediate.size());
  const auto max_blocks_per_seq = static_cast<size_t>(
      options.max_blocks_per_seq != 0
          ? options.max_blocks_per_seq
          : (config.max_position_embeddings + options.block_size - 1) / options.block_size);
  WorkspaceSizes w;
  w.hidden = rows * hidden * e;
  w.normed = rows * hidden * e;
  w.qkv = rows * (q_width + 2 * kv_width) * e;
  w.attn = rows * q_width * e;
  w.proj = rows * hidden * e;
  w.gate_up = rows * 2 * inter * e;
  w.mlp_act = rows * inter * e;
  w.final_rows = logit_rows * hidden * e;
  w.logits_local = logit_rows * vocab_rows * e;
  w.logits_all = static_cast<size_t>(shape.tp_size) * logit_rows * vocab_rows * e;
  w.token_ids = rows * sizeof(int32_t);
  w.token_seq = rows * sizeof(int32_t);
  w.token_pos = rows * sizeof(int32_t);
  w.block_tables = static_cast<size_t>(options.max_seqs) * max_blocks_per_seq * sizeof(int32_t);
  w.logit_rows = logit_rows * sizeof(int32_t);
  w.moe = moe_workspace_bytes(config, shape, options.max_tokens_per_step, element_size);
  const bool dynamic_ntk = config.rope.scaling == RopeScaling::kDynamic ||
                           config.rope.scaling == RopeScaling::kQwenNtk;
  w.frequency_scale = dynamic_ntk ? rows * sizeof(float) : 0;
  w.query_scale = config.logn_attn_context > 0 ? rows * sizeof(float) : 0;
  return w;
}

std::string kv_cache_dtype_name(KvCacheDtype kv_dtype, DType compute) {
  return kv_dtype == KvCacheDtype::kInt8 ? "int8" : std::string(dtype_name(compute));
}

int64_t kv_bytes_per_token(const ModelConfig& config, const RankShape& shape, int element_size,
                           KvCacheDtype kv_dtype) {
  const int64_t per_head = kv_dtype == KvCacheDtype::kInt8
                               ? config.head_dim + int64_t{sizeof(float)}
                               : int64_t{config.head_dim} * element_size;
  return int64_t{config.num_layers} * 2 * shape.heads.num_kv_heads() * per_head;
}

void Model::allocate_workspace() {
  const WorkspaceSizes w = workspace_sizes(config_, shape_, options_, element_size_);
  const auto e = static_cast<size_t>(element_size_);
  hidden_ = DeviceBuffer(backend_, w.hidden);
  normed_ = DeviceBuffer(backend_, w.normed);
  qkv_ = DeviceBuffer(backend_, w.qkv);
  attn_ = DeviceBuffer(backend_, w.attn);
  proj_ = DeviceBuffer(backend_, w.proj);
  gate_up_ = DeviceBuffer(backend_, w.gate_up);
  mlp_act_ = DeviceBuffer(backend_, w.mlp_act);
  final_rows_ = DeviceBuffer(backend_, w.final_rows);
  logits_local_ = DeviceBuffer(backend_, w.logits_local);
  logits_all_ = DeviceBuffer(backend_, w.logits_all);
  gathered_host_.resize(w.logits_all / e);
  token_ids_ = DeviceBuffer(backend_, w.token_ids);
  token_seq_ = DeviceBuffer(backend_, w.token_seq);
  token_pos_ = DeviceBuffer(backend_, w.token_pos);
  block_tables_ = DeviceBuffer(backend_, w.block_tables);
  logit_rows_ = DeviceBuffer(backend_, w.logit_rows);
  if (w.frequency_scale != 0) frequency_scale_ = DeviceBuffer(backend_, w.frequency_scale);
  if (w.query_scale != 0) query_scale_ = DeviceBuffer(backend_, w.query_scale);
  frequency_scale_host_.resize(w.frequency_scale / sizeof(float));
  query_scale_host_.resize(w.query_scale / sizeof(float));
  prompt_len_host_.resize(static_cast<size_t>(options_.max_seqs));

  // The paged KV cache: per layer, [num_blocks, block_size, local kv heads, head_dim] for K and V
  // (one-byte codes with an int8 cache, and beside them [num_blocks, block_size, local kv heads]
  // float32 scales).
  const bool int8 = options_.kv_cache_dtype == KvCacheDtype::kInt8;
  const size_t slots = static_cast<size_t>(options_.num_kv_blocks) *
                       static_cast<size_t>(options_.block_size);
  const size_t cache_bytes = slots * static_cast<size_t>(kv_width_) * (int8 ? 1 : e);
  const size_t scale_bytes = slots * static_cast<size_t>(heads_.num_kv_heads) * sizeof(float);
  for (int layer = 0; layer < config_.num_layers; ++layer) {
    key_cache_.emplace_back(backend_, cache_bytes);
    value_cache_.emplace_back(backend_, cache_bytes);
    if (int8) {
      key_scale_.emplace_back(backend_, scale_bytes);
      value_scale_.emplace_back(backend_, scale_bytes);
    }
  }
}

kernels::Int8KvCache Model::int8_cache(int layer) {
  const auto l = static_cast<size_t>(layer);
  return {key_cache_[l].as<int8_t>(), value_cache_[l].as<int8_t>(), key_scale_[l].as<float>(),
          value_scale_[l].as<float>()};
}

size_t Model::kv_cache_bytes() const {
  size_t total = 0;
  for (const auto* buffers : {&key_cache_, &value_cache_, &key_scale_, &value_scale_}) {
    for (const DeviceBuffer& buffer : *buffers) total += buffer.bytes();
  }
  return total;
}

void Model::load(const Checkpoint& checkpoint,
                 const std::function<void(const LoadProgress&)>& progress, const LoraAdapter* lora) {
  const Architecture* architecture = find_architecture(config_.architecture);
  TPS_CHECK(architecture != nullptr, "no adapter for {}", config_.architecture);
  const std::vector<WeightShard> plan = plan_weights(config_, *architecture, shape_);
  // A missing or misshapen tensor says more than an extra one.
  validate_weights(checkpoint, plan, config_.quant);
  unused_tensors_ = check_unused_tensors(checkpoint, accounted_tensors(config_, *architecture),
                                         options_.allow_unused_tensors);
  weights_.load(checkpoint, plan, backend_, progress, lora, config_.quant, options_.load_threads);
  bind_weights();
}

void Model::load_synthetic(uint64_t seed, const std::function<void(const LoadProgress&)>& progress) {
  const Architecture* architecture = find_architecture(config_.architecture);
  TPS_CHECK(architecture != nullptr, "no adapter for {}", config_.architecture);
  weights_.load_synthetic(plan_weights(config_, *architecture, shape_), backend_, seed, progress,
                          config_.quant);
  bind_weights();
}

void Model::fill_kv_cache_synthetic(uint64_t seed) {
  if (options_.kv_cache_dtype == KvCacheDtype::kInt8) {
    fill_int8_kv_cache_synthetic(seed);
    return;
  }
  const auto elements = [&](const DeviceBuffer& b) {
    return static_cast<int64_t>(b.bytes() / static_cast<size_t>(element_size_));
  };
  for (size_t layer = 0; layer < key_cache_.size(); ++layer) {
    upload_synthetic(backend_, key_cache_[layer].data(), elements(key_cache_[layer]), 1.0f,
                     seed + 2 * layer);
    upload_synthetic(backend_, value_cache_[layer].data(), elements(value_cache_[layer]), 1.0f,
                     seed + 2 * layer + 1);
  }
}

// Codes uniform in [-127, 127] (xorshift) and every scale 1 / 127: values in [-1, 1], as the float
// cache's synthetic fill.
void Model::fill_int8_kv_cache_synthetic(uint64_t seed) {
  constexpr size_t kChunk = size_t{1} << 20;
  std::vector<int8_t> codes(kChunk);
  uint64_t state = seed * 2654435761u + 88172645463325252ull;
  const auto fill_codes = [&](DeviceBuffer& buffer) {
    for (size_t done = 0; done < buffer.bytes(); done += kChunk) {
      const size_t count = std::min(kChunk, buffer.bytes() - done);
      for (size_t i = 0; i < count; ++i) {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17;
        codes[i] = static_cast<int8_t>(static_cast<int>(state % 255) - 127);
      }
      backend_.copy_to_device(static_cast<char*>(buffer.data()) + done, codes.data(), count);
    }
  };
  for (size_t layer = 0; layer < key_cache_.size(); ++layer) {
    fill_codes(key_cache_[layer]);
    fill_codes(value_cache_[layer]);
    const std::vector<float> scales(key_scale_[layer].bytes() / sizeof(float), 1.0f / 127.0f);
    backend_.copy_to_device(key_scale_[layer].data(), scales.data(), key_scale_[layer].bytes());
    backend_.copy_to_device(value_scale_[layer].data(), scales.data(), value_scale_[layer].bytes());
  }
}

void Model::bind_weights() {
  embed_ = weights_.get("embed");
  final_norm_ = weights_.get("final_norm");
  // Tied embeddings: lm_head is the embedding's vocab shard itself, not a copy -- unless the GGUF
  // file stores it packed, when a packed lm_head was planned beside the float table.
  lm_head_ = weights_.find_linear("lm_head");
  if (!lm_head_.present()) lm_head_ = weights_.get_linear("embed");
  moe_.bind(weights_);
  layers_.clear();
  for (int layer = 0; layer < config_.num_layers; ++layer) {
    const auto w = [&](const char* part) { return weights_.find(layer_weight(layer, part)); };
    const auto linear = [&](const char* part) {
      return weights_.find_linear(layer_weight(layer, part));
    };
    layers_.push_back({w("attn_norm"), linear("qkv"), w("qkv_bias"), linear("o"), w("o_bias"),
                       w("mlp_norm"), linear("gate_up"), w("gate_up_bias"), linear("down"),
                       w("down_bias")});
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
  upload_rope_scales(step);
}

// The per-token factors of dynamic NTK and logn attention (runtime/model/rope_tables.h), computed here on
// every rank from the broadcast step, so all ranks rotate alike.
void Model::upload_rope_scales(const StepInput& step) {
  if (frequency_scale_.bytes() == 0 && query_scale_.bytes() == 0) return;
  const int tokens = step.num_tokens();
  const int seqs = step.num_seqs();
  if (!step.seq_prompt_len.empty()) {
    TPS_CHECK(static_cast<int>(step.seq_prompt_len.size()) == seqs,
              "{} prompt lengths for {} sequences", step.seq_prompt_len.size(), seqs);
    std::copy(step.seq_prompt_len.begin(), step.seq_prompt_len.end(), prompt_len_host_.begin());
  } else {  // the prompt ends at the last position this step reaches (step.h)
    std::fill(prompt_len_host_.begin(), prompt_len_host_.begin() + seqs, 0);
    for (int t = 0; t < tokens; ++t) {
      int32_t& length = prompt_len_host_[static_cast<size_t>(step.token_seq[static_cast<size_t>(t)])];
      length = std::max(length, step.token_pos[static_cast<size_t>(t)] + 1);
    }
  }
  for (int t = 0; t < tokens; ++t) {
    const auto i = static_cast<size_t>(t);
    const int32_t position = step.token_pos[i];
    const int32_t prompt = prompt_len_host_[static_cast<size_t>(step.token_seq[i])];
    if (!frequency_scale_host_.empty()) {
      frequency_scale_host_[i] = dynamic_ntk_scale(config_.rope, prompt, position);
    }
    if (!query_scale_host_.empty()) {
      query_scale_host_[i] = logn_query_scale(config_.logn_attn_context, position);
    }
  }
  const auto bytes = static_cast<size_t>(tokens) * sizeof(float);
  if (frequency_scale_.bytes() != 0) {
    backend_.copy_to_device(frequency_scale_.data(), frequency_scale_host_.data(), bytes);
  }
  if (query_scale_.bytes() != 0) {
    backend_.copy_to_device(query_scale_.data(), query_scale_host_.data(), bytes);
  }
}

void Model::run_layer(int layer, const kernels::PagedBatch& batch, int tokens) {
  const LayerWeights& w = layers_[static_cast<size_t>(layer)];
  const int64_t hidden = config_.hidden_size;
  const bool first_rank = shape_.rank == 0;
  void* q = qkv_.data();

  // Attention block. normed_ already holds rms_norm(hidden_) by this layer's attn_norm: forward
  // normed layer 0's input, and each layer's last residual add is fused with the norm after it.
  run_linear(backend_, normed_.data(), w.qkv, w.qkv_bias, tokens, qkv_width_, hidden, q);
  // RoPE of q and k in place in the fused QKV rows, and k, v into the cache: one op.
  const float scale = 1.0f / std::sqrt(static_cast<float>(config_.head_dim));
  if (options_.kv_cache_dtype == KvCacheDtype::kInt8) {
    const kernels::Int8KvCache cache = int8_cache(layer);
    backend_.rope_cache_write_int8(q, qkv_width_, token_pos_.as<int32_t>(), tokens, heads_, rope_,
                                   batch, cache);
    backend_.attention_int8(q, qkv_width_, cache, batch, heads_, scale, attn_.data());
  } else {
    backend_.rope_cache_write(q, qkv_width_, token_pos_.as<int32_t>(), tokens, heads_, rope_,
                              batch, key_cache_[layer].data(), value_cache_[layer].data());
    backend_.attention(q, qkv_width_, key_cache_[layer].data(), value_cache_[layer].data(), batch,
                       heads_, scale, attn_.data());
  }
  // Row-parallel: each rank holds a slice of the input columns; the bias is added once (rank 0)
  // so the all-reduce sums it exactly once.
  run_linear(backend_, attn_.data(), w.o, first_rank ? w.o_bias : nullptr, tokens, hidden,
             q_width_, proj_.data());
  comm_.all_reduce_sum(proj_.data(), static_cast<size_t>(tokens * hidden), backend_.compute_dtype());
  // Residual add fused with the MLP norm.
  backend_.add_rms_norm(hidden_.data(), proj_.data(), w.mlp_norm, tokens, hidden,
                        config_.rms_norm_eps, normed_.data());

  // MLP block.
  if (config_.moe.sparse(layer)) {
    moe_.run(layer, normed_.data(), tokens, proj_.data());  // this rank's partial sum
  } else {
    run_linear(backend_, normed_.data(), w.gate_up, w.gate_up_bias, tokens, 2 * inter_, hidden,
               gate_up_.data());
    backend_.silu_mul(gate_up_.data(), tokens, inter_, mlp_act_.data());
    run_linear(backend_, mlp_act_.data(), w.down, first_rank ? w.down_bias : nullptr, tokens,
               hidden, inter_, proj_.data());
  }
  comm_.all_reduce_sum(proj_.data(), static_cast<size_t>(tokens * hidden), backend_.compute_dtype());
  // Residual add (dense MLP or MoE alike) fused with the norm that comes next: the next layer's
  // attention norm, or the final norm after the last layer (compute_logits picks its rows).
  const bool last = layer + 1 == config_.num_layers;
  const void* next_norm = last ? final_norm_ : layers_[static_cast<size_t>(layer) + 1].attn_norm;
  backend_.add_rms_norm(hidden_.data(), proj_.data(), next_norm, tokens, hidden,
                        config_.rms_norm_eps, normed_.data());
}

void Model::compute_logits(const StepInput& step, std::vector<float>& logits) {
  const int rows = static_cast<int>(step.logit_rows.size());
  const int64_t hidden = config_.hidden_size;
  const int64_t vocab_rows = shape_.vocab.padded_rows;
  logits.assign(static_cast<size_t>(rows) * static_cast<size_t>(config_.vocab_size), 0.0f);
  if (rows == 0) return;
  // normed_ holds the final norm of every token's row (forward): the norm is row-wise, so picking
  // the rows afterwards gives exactly the norm of the picked rows.
  backend_.copy_rows(normed_.data(), logit_rows_.as<int32_t>(), rows, hidden, final_rows_.data());
  run_linear(backend_, final_rows_.data(), lm_head_, nullptr, rows, vocab_rows, hidden,
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
  // Layer 0's attention norm (the final norm for a model of no layers); every later norm is fused
  // with the residual add before it, in run_layer.
  const void* first_norm = layers_.empty() ? final_norm_ : layers_.front().attn_norm;
  backend_.rms_norm(hidden_.data(), first_norm, tokens, config_.hidden_size, config_.rms_norm_eps,
                    normed_.data());
  for (int layer = 0; layer < config_.num_layers; ++layer) run_layer(layer, batch, tokens);
  compute_logits(step, logits);
}

}  // namespace tpserve::runtime
