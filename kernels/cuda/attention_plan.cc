// Host-side planning of the paged attention grid (see attention.cu for the kernel itself).
//
// The host does not know the context lengths (token_pos lives on the device), only the capacity
// of a block table (max_blocks_per_seq * block_size). Decode batches are small in tokens, so the
// KV range is split to give the GPU about kTargetCtasPerSm CTAs per SM; prefill batches already
// have thousands of (token, head) CTAs and run unsplit, writing out directly. Splits past a
// sequence's actual length exit at once.
#include <algorithm>
#include <cstdint>

#include "common/error.h"
#include "kernels/cuda/attention_config.h"
#include "kernels/cuda/cuda_ops.h"

namespace tpserve::kernels::cuda {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

AttentionPlan plan_attention(const PagedBatch& batch, const HeadLayout& heads, int num_sms) {
  if (heads.head_dim <= 0 || heads.head_dim % 8 != 0 || heads.head_dim > kAttentionMaxHeadDim) {
    raise(ErrorCode::kUnimplemented,
          "cuda attention: head_dim {} unsupported (need a multiple of 8, at most {})",
          heads.head_dim, kAttentionMaxHeadDim);
  }
  if (heads.group_size <= 0 || heads.num_q_heads <= 0 || heads.num_kv_heads <= 0) {
    raise(ErrorCode::kInvalidArgument,
          "cuda attention: bad head layout (q heads {}, kv heads {}, group size {})",
          heads.num_q_heads, heads.num_kv_heads, heads.group_size);
  }
  if (batch.block_size <= 0 || batch.max_blocks_per_seq <= 0) {
    raise(ErrorCode::kInvalidArgument, "cuda attention: bad block table ({} blocks of {})",
          batch.max_blocks_per_seq, batch.block_size);
  }
  AttentionPlan plan;
  // Local q heads reading one local KV head: at most group_size, at most all local q heads.
  const int heads_per_kv = std::min(heads.group_size, heads.num_q_heads);
  plan.head_chunks = static_cast<int>(ceil_div(heads_per_kv, kAttentionMaxHeads));
  const int64_t capacity = static_cast<int64_t>(batch.max_blocks_per_seq) * batch.block_size;
  const int64_t base_ctas = std::max<int64_t>(
      1, static_cast<int64_t>(batch.num_tokens) * heads.num_kv_heads * plan.head_chunks);
  const int64_t wanted =
      ceil_div(static_cast<int64_t>(kTargetCtasPerSm) * std::max(num_sms, 1), base_ctas);
  const int64_t most = std::min<int64_t>(kAttentionMaxSplits, ceil_div(capacity, kMinSplitKeys));
  int64_t splits = std::clamp<int64_t>(wanted, 1, std::max<int64_t>(most, 1));
  plan.split_keys =
      static_cast<int>(ceil_div(ceil_div(capacity, splits), kAttentionKeyTile) * kAttentionKeyTile);
  splits = ceil_div(capacity, plan.split_keys);
  plan.num_splits = static_cast<int>(splits);
  if (plan.num_splits > 1) {
    // Per (token, local q head, split): head_dim float accumulators, then (max, sum) pairs.
    const int64_t rows = static_cast<int64_t>(batch.num_tokens) * heads.num_q_heads * splits;
    plan.scratch_bytes = static_cast<size_t>(rows) * (heads.head_dim + 2) * sizeof(float);
  }
  return plan;
}

void check_attention_caches(const void* key_cache, const void* value_cache) {
  const auto misaligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 != 0; };
  if (misaligned(key_cache) || misaligned(value_cache)) {
    raise(ErrorCode::kInvalidArgument,
          "cuda attention: KV cache pointers {} / {} must be 16-byte aligned", key_cache,
          value_cache);
  }
}

}  // namespace tpserve::kernels::cuda
