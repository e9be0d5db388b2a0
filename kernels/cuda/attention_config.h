// Shape constants of the paged attention kernel, shared by the planner (attention_plan.cc) and the
// kernel (attention.cu).
#pragma once

namespace tpserve::kernels::cuda {

inline constexpr int kAttentionThreads = 128;     // 4 warps per CTA
inline constexpr int kAttentionKeyTile = 32;      // keys staged in shared memory at a time (a warp)
inline constexpr int kAttentionMaxHeads = 8;      // q heads served by one CTA (one KV group chunk)
inline constexpr int kAttentionMaxHeadDim = 256;  // 2 output dims per thread at 128 threads
inline constexpr int kAttentionMaxSplits = 128;   // bounds the partials scratch and the reduction
inline constexpr int kMinSplitKeys =
    64;  // two key tiles: below this a split costs more than it saves
inline constexpr int kTargetCtasPerSm = 8;  // decode batches are split up to this many CTAs

}  // namespace tpserve::kernels::cuda
