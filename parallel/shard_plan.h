// How rank r of N slices each kind of weight. This file knows head counts and layouts, not any
// family's tensor names: runtime/ family adapters say which checkpoint tensor is which, and
// runtime/model/weight_plan.cc turns that into per-rank byte ranges using the functions here.
//
//   kind        slices                    used for
//   column      output rows (heads/units) q, k, v (fused or not), gate, up
//   row         input columns             o, down (their partial sums are all-reduced)
//   vocab       vocabulary rows, padded   embedding, lm_head
//   replicated  nothing                   norms, row-parallel biases
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

// Balanced split of n units into `parts`: part i is [i*n/parts, (i+1)*n/parts). Sizes differ by
// at most one, so any N works for the MLP even when it does not divide intermediate_size.
Range even_split(int64_t n, int parts, int index);

// The attention heads of one rank. Query heads split evenly (N must divide them); the rank holds
// every KV head its query heads read: num_kv_heads / N of them when N divides the KV heads, one
// (replicated across N / num_kv_heads ranks) when the KV heads divide N, and the covering range
// otherwise.
struct HeadShard {
  int q_head_begin = 0;
  int q_head_end = 0;
  int kv_head_begin = 0;
  int kv_head_end = 0;
  int group_size = 1;  // query heads per KV head
  int num_q_heads() const { return q_head_end - q_head_begin; }
  int num_kv_heads() const { return kv_head_end - kv_head_begin; }
};

// Throws tpserve::Error (kInvalidArgument) naming the numbers when tp_size does not divide
// num_q_heads or num_q_heads is not a multiple of num_kv_heads.
HeadShard shard_heads(int num_q_heads, int num_kv_heads, int tp_size, int rank);

// Vocabulary-parallel rows: every rank holds padded_rows = ceil(vocab / N) rows so the logits
// all-gather is uniform; rows [begin, end) are real, the rest are zero padding.
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

// Rows of a fused [gate; up] weight (ChatGLM dense_h_to_4h) for this rank's intermediate units:
// its gate rows then its up rows.
std::vector<Range> fused_gate_up_rows(int64_t intermediate_size, int tp_size, int rank);

}  // namespace tpserve::parallel
