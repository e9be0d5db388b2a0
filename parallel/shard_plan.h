// How rank r of N slices each kind of weight. This file knows head counts and layouts, not any
// family's tensor names: runtime/ family adapters say which checkpoint tensor is which, and
// runtime/model/weight_plan.cc turns that into per-rank byte ranges using the functions here.
//
//   kind        slices                    used for
//   column      output rows (heads/units) q, k, v (fused or not), gate, up
//   row         input columns             o, down (their partial sums are all-reduced)
//   vocab       vocabulary rows, padded   embedding, lm_head
//   replicated  nothing                   norms, row-parallel biases
//
// Any N up to the query heads works: every split is contiguous and as balanced as its alignment
// allows (split_range), so shards may differ by a head, a unit or a vocabulary row. Nothing needs
// equal parts: attention is per head, a column split only decides which outputs a rank computes,
// a row split's partial sums are all-reduced whatever their widths, and the logits all-gather pads
// every rank's vocabulary part to the largest one.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace tpserve::parallel {

enum class ShardKind { kColumn, kRow, kVocab, kReplicated };

std::string_view shard_kind_name(ShardKind kind);

struct Range {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
  bool operator==(const Range&) const = default;
};

// Part `part` of `parts` contiguous ranges that tile [0, total). Every boundary but the last (total
// itself) is a multiple of `align`, the indivisible block (1 for heads and float weights; a
// quantized weight's group or pack when those load), and the parts' counts of blocks differ by at
// most one, the larger parts first (so rank 0 holds a largest shard). A part is empty when total
// has fewer blocks than there are parts; callers that cannot run an empty part refuse first.
Range split_range(int64_t total, int parts, int part, int64_t align = 1);

// The largest part of split_range(total, parts, *, align): the size every part is planned for
// where all ranks must agree (the vocabulary gather's padding).
int64_t largest_part(int64_t total, int parts, int64_t align = 1);

// The attention heads of one rank. Query heads split as evenly as they go (split_range: counts
// differ by at most one); the rank holds every KV head its query heads read, the covering range:
// num_kv_heads / N of them when N divides the KV heads, one (replicated across N / num_kv_heads
// ranks) when the KV heads divide N, and otherwise the KV heads whose groups its query heads touch
// (a group cut between two ranks is held by both).
struct HeadShard {
  int q_head_begin = 0;
  int q_head_end = 0;
  int kv_head_begin = 0;
  int kv_head_end = 0;
  int group_size = 1;  // query heads per KV head
  int num_q_heads() const { return q_head_end - q_head_begin; }
  int num_kv_heads() const { return kv_head_end - kv_head_begin; }
};

// Throws tpserve::Error (kInvalidArgument) naming the numbers when tp_size exceeds num_q_heads
// (a rank would have no head: the only N with no split) or num_q_heads is not a multiple of
// num_kv_heads.
HeadShard shard_heads(int num_q_heads, int num_kv_heads, int tp_size, int rank);

// Vocabulary-parallel rows, split_range of the vocabulary: every rank holds padded_rows =
// ceil(vocab / N) rows (the largest part) so the logits all-gather is uniform; rows [begin, end)
// are real, the rest are zero padding.
struct VocabShard {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t padded_rows = 0;
};
VocabShard shard_vocab(int64_t vocab_size, int tp_size, int rank);

// Fused QKV tensors, by how the checkpoint orders the output rows.
enum class QkvLayout {
  kConcatenated,      // [q heads; k heads; v heads] (Qwen v1 c_attn, ChatGLM query_key_value)
  kGroupInterleaved,  // per KV group: [its q heads, k, v] (InternLM2 wqkv)
  kPerHead,           // per head: [q, k, v]; one KV head per q head (ChatGLM query_key_value
                      // without multi_query_attention)
};

// Rows of a fused QKV weight (or bias) this rank holds, listed in the canonical order
// [q (this rank's heads); k; v] and merged where contiguous. head_dim rows per head.
std::vector<Range> fused_qkv_rows(QkvLayout layout, int num_q_heads, int num_kv_heads,
                                  int head_dim, const HeadShard& heads);

// Rows of separate q / k / v projections this rank holds.
Range q_rows(const HeadShard& heads, int head_dim);
Range kv_rows(const HeadShard& heads, int head_dim);

// Rows of a fused [gate; up] weight (ChatGLM dense_h_to_4h) for this rank's intermediate units
// (its split_range of intermediate_size): its gate rows then its up rows.
std::vector<Range> fused_gate_up_rows(int64_t intermediate_size, Range units);

}  // namespace tpserve::parallel
