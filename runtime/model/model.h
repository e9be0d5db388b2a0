// The canonical decoder, run tensor-parallel on one rank's shard. Every family goes through this
// one forward; the differences live in the adapters (runtime/families/arch_*.cc) and the weight plan.
//
// One step, on every rank:
//   embed (vocab-parallel rows; all-reduce)
//   per layer: RMSNorm -> fused QKV GEMM (this rank's heads, + bias) -> RoPE + KV cache write
//              -> paged attention -> O GEMM (row-parallel) -> all-reduce -> + residual
//              -> RMSNorm -> fused gate|up GEMM -> SiLU(gate) * up -> down GEMM (row-parallel)
//              -> all-reduce -> + residual
//              (each "+ residual" is one op with the RMSNorm after it, Backend::add_rms_norm: the
//              next layer's attention norm, or the final norm after the last layer)
//              (sparse layers, config.moe: the MLP is runtime/model/moe.h's SparseMoe, whose routed
//              experts and shared expert meet in that same one all-reduce)
//   final RMSNorm on the tokens whose logits are wanted -> lm_head (vocab-parallel) -> all-gather
#pragma once

#include <functional>
#include <vector>

#include "parallel/communicator.h"
#include "runtime/config/model_config.h"
#include "runtime/formats/safetensors.h"
#include "runtime/model/device_buffer.h"
#include "runtime/model/moe.h"
#include "runtime/model/step.h"
#include "runtime/model/weight_plan.h"
#include "runtime/model/weights.h"

namespace tpserve::runtime {

// What the paged KV cache stores (--kv-cache-dtype): the compute dtype (kAuto), or int8 codes
// with one float32 scale per position and KV head (kInt8; kernels/ops.h, Int8KvCache).
enum class KvCacheDtype { kAuto, kInt8 };
// "int8", or the compute dtype's name for kAuto ("f32", "bf16").
std::string kv_cache_dtype_name(KvCacheDtype kv_dtype, DType compute);

struct ModelOptions {
  int max_tokens_per_step = 256;  // rows of the activation workspace
  int max_logit_rows = 64;        // tokens per step whose logits come back
  int max_seqs = 64;              // sequences per step
  int32_t block_size = 16;        // KV positions per block
  int32_t num_kv_blocks = 64;     // KV blocks per layer on this rank
  int32_t max_blocks_per_seq = 0; // 0: enough for max_position_embeddings
  KvCacheDtype kv_cache_dtype = KvCacheDtype::kAuto;
  // Checkpoint tensors no adapter rule reads are ignored (listed by unused_tensors()) instead of
  // refused (runtime/model/weights.h, check_unused_tensors).
  bool allow_unused_tensors = false;
  // Threads reading the checkpoint at load (runtime/model/shard_loader.h); 0: the host's cores,
  // at most 8.
  int load_threads = 0;
};

// Bytes of every activation buffer a Model allocates for its options (the KV cache aside). The
// model allocates exactly these, and the memory plan (runtime/planning/memory_plan.h) counts them.
struct WorkspaceSizes {
  size_t hidden = 0, normed = 0, qkv = 0, attn = 0, proj = 0, gate_up = 0, mlp_act = 0;
  size_t final_rows = 0, logits_local = 0, logits_all = 0;
  size_t token_ids = 0, token_seq = 0, token_pos = 0, block_tables = 0, logit_rows = 0;
  // Per-token float32 factors of the long-context schemes (0 for models without them): dynamic
  // NTK's frequency scale, Qwen v1's logn query scale.
  size_t frequency_scale = 0, query_scale = 0;
  size_t moe = 0;  // SparseMoe's workspace (runtime/model/moe.h); 0 for dense models
  size_t total() const;
};
// max_blocks_per_seq 0 means enough blocks for max_position_embeddings, as in the model.
WorkspaceSizes workspace_sizes(const ModelConfig& config, const RankShape& shape,
                               const ModelOptions& options, int element_size);
// Bytes per position of this rank's KV cache: layers x 2 (K, V) x local kv heads x head_dim x dtype;
// for int8, layers x 2 x local kv heads x (head_dim one-byte codes + a float32 scale).
int64_t kv_bytes_per_token(const ModelConfig& config, const RankShape& shape, int element_size,
                           KvCacheDtype kv_dtype);

class Model {
 public:
  Model(ModelConfig config, RankShape shape, kernels::Backend& backend,
        parallel::Communicator& comm, const ModelOptions& options);

  // Loads this rank's shards (validating every tensor first, and that the plan reads every tensor
  // of the checkpoint), merging a LoRA adapter when given.
  void load(const Checkpoint& checkpoint,
            const std::function<void(const LoadProgress&)>& progress = {},
            const LoraAdapter* lora = nullptr);

  // Synthetic weights of the plan's shapes (WeightStore::load_synthetic), no checkpoint: for
  // `tpserve bench` and memory checks, never for serving.
  void load_synthetic(uint64_t seed,
                      const std::function<void(const LoadProgress&)>& progress = {});
  // Fills every layer's K and V cache with pseudo-random values, so that attention over positions
  // no prefill wrote reads finite, benchmark-realistic numbers.
  void fill_kv_cache_synthetic(uint64_t seed);

  // Runs one step. logits receives [step.logit_rows.size(), vocab_size] float32 (row-major) on
  // every rank. Step sizes beyond the options are a broken invariant (callers validate first).
  void forward(const StepInput& step, std::vector<float>& logits);

  const ModelConfig& config() const { return config_; }
  const RankShape& shape() const { return shape_; }
  const ModelOptions& options() const { return options_; }
  size_t weight_bytes() const { return weights_.bytes(); }
  // The checkpoint tensors load() ignored under options().allow_unused_tensors, sorted.
  const std::vector<std::string>& unused_tensors() const { return unused_tensors_; }
  size_t kv_cache_bytes() const;

 private:
  struct LayerWeights {
    const void* attn_norm;
    LinearWeight qkv;
    const void* qkv_bias;
    LinearWeight o;
    const void* o_bias;
    const void* mlp_norm;
    LinearWeight gate_up;
    const void* gate_up_bias;
    LinearWeight down;
    const void* down_bias;
  };

  int32_t blocks_for_positions(int64_t positions) const;
  kernels::Int8KvCache int8_cache(int layer);
  void fill_int8_kv_cache_synthetic(uint64_t seed);
  void allocate_workspace();
  void bind_weights();
  void upload_step(const StepInput& step);
  void upload_rope_scales(const StepInput& step);
  void run_layer(int layer, const kernels::PagedBatch& batch, int num_tokens);
  void compute_logits(const StepInput& step, std::vector<float>& logits);

  ModelConfig config_;
  RankShape shape_;
  kernels::Backend& backend_;
  parallel::Communicator& comm_;
  ModelOptions options_;
  int element_size_;
  kernels::HeadLayout heads_;
  kernels::RopeParams rope_;
  int64_t qkv_width_ = 0;  // (local q heads + 2 * local kv heads) * head_dim
  int64_t q_width_ = 0;
  int64_t kv_width_ = 0;
  int64_t inter_ = 0;      // this rank's intermediate units

  WeightStore weights_;
  std::vector<std::string> unused_tensors_;
  std::vector<LayerWeights> layers_;
  const void* embed_ = nullptr;
  const void* final_norm_ = nullptr;
  LinearWeight lm_head_;

  DeviceBuffer inv_freq_;
  std::vector<DeviceBuffer> key_cache_;
  std::vector<DeviceBuffer> value_cache_;
  // With an int8 cache, key_cache_ / value_cache_ hold the codes and these their scales.
  std::vector<DeviceBuffer> key_scale_;
  std::vector<DeviceBuffer> value_scale_;
  // Workspace, planned once: nothing is allocated per step.
  DeviceBuffer hidden_, normed_, qkv_, attn_, proj_, gate_up_, mlp_act_;
  SparseMoe moe_;  // the sparse MLP layers (config.moe), with their own workspace
  DeviceBuffer final_rows_, logits_local_, logits_all_;
  DeviceBuffer token_ids_, token_seq_, token_pos_, block_tables_, logit_rows_;
  DeviceBuffer frequency_scale_, query_scale_;  // empty unless the config needs them
  std::vector<float> frequency_scale_host_, query_scale_host_;  // [max_tokens_per_step]
  std::vector<int32_t> prompt_len_host_;                        // [max_seqs]
  std::vector<float> gathered_host_;
};

}  // namespace tpserve::runtime
