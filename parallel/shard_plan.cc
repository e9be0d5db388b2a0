#include "parallel/shard_plan.h"

#include "common/check.h"
#include "common/error.h"

#include <algorithm>
#include <string>

namespace tpserve::parallel {

namespace {

// Appends [begin, end) to ranges, merging with the last range when contiguous.
void append(std::vector<Range>& ranges, int64_t begin, int64_t end) {
  if (!ranges.empty() && ranges.back().end == begin) {
    ranges.back().end = end;
  } else {
    ranges.push_back({begin, end});
  }
}

// ChatGLM's query_key_value without multi_query_attention: modeling_chatglm.py views the output as
// [..., num_heads, 3 * head_dim] and splits the last dim in three, so head h owns rows
// [3h d, 3(h+1) d) as its q, then k, then v. Only this rank's heads' rows are read.
std::vector<Range> per_head_qkv_rows(int num_q_heads, int num_kv_heads, int head_dim,
                                     const HeadShard& heads) {
  if (num_q_heads != num_kv_heads) {
    raise(ErrorCode::kInvalidArgument,
          "a per-head [q, k, v] QKV layout needs one KV head per query head, got {} query and {} "
          "KV heads", num_q_heads, num_kv_heads);
  }
  std::vector<Range> rows;
  const int64_t d = head_dim;
  for (int part = 0; part < 3; ++part) {  // this rank's q rows, then its k rows, then its v rows
    for (int h = heads.q_head_begin; h < heads.q_head_end; ++h) {
      const int64_t begin = (3 * static_cast<int64_t>(h) + part) * d;
      append(rows, begin, begin + d);
    }
  }
  return rows;
}

}  // namespace

std::string_view shard_kind_name(ShardKind kind) {
  switch (kind) {
    case ShardKind::kColumn: return "column";
    case ShardKind::kRow: return "row";
    case ShardKind::kVocab: return "vocab";
    case ShardKind::kReplicated: return "replicated";
  }
  return "?";
}

Range split_range(int64_t total, int parts, int part, int64_t align) {
  TPS_CHECK(total >= 0 && align > 0 && parts > 0 && part >= 0 && part < parts,
            "split_range({}, {}, {}, {})", total, parts, part, align);
  const int64_t blocks = (total + align - 1) / align;
  const int64_t base = blocks / parts;
  const int64_t extra = blocks % parts;  // the first `extra` parts take one block more
  const int64_t first = part * base + std::min<int64_t>(part, extra);
  const int64_t count = base + (part < extra ? 1 : 0);
  return {std::min(total, first * align), std::min(total, (first + count) * align)};
}

int64_t largest_part(int64_t total, int parts, int64_t align) {
  return split_range(total, parts, 0, align).size();
}

HeadShard shard_heads(int num_q_heads, int num_kv_heads, int tp_size, int rank) {
  TPS_CHECK(tp_size > 0 && rank >= 0 && rank < tp_size, "rank {} of {}", rank, tp_size);
  if (num_q_heads <= 0 || num_kv_heads <= 0 || num_q_heads % num_kv_heads != 0) {
    raise(ErrorCode::kInvalidArgument,
          "num_attention_heads ({}) must be a positive multiple of num_key_value_heads ({})",
          num_q_heads, num_kv_heads);
  }
  if (tp_size > num_q_heads) {
    raise(ErrorCode::kInvalidArgument,
          "tensor-parallel size {} exceeds the {} query heads (num_attention_heads): every rank "
          "needs at least one head; valid sizes: 1 to {}",
          tp_size, num_q_heads, num_q_heads);
  }
  HeadShard shard;
  const Range q = split_range(num_q_heads, tp_size, rank);
  shard.group_size = num_q_heads / num_kv_heads;
  shard.q_head_begin = static_cast<int>(q.begin);
  shard.q_head_end = static_cast<int>(q.end);
  shard.kv_head_begin = shard.q_head_begin / shard.group_size;
  shard.kv_head_end = (shard.q_head_end - 1) / shard.group_size + 1;
  return shard;
}

VocabShard shard_vocab(int64_t vocab_size, int tp_size, int rank) {
  const Range rows = split_range(vocab_size, tp_size, rank);
  return {rows.begin, rows.end, largest_part(vocab_size, tp_size)};
}

std::vector<Range> fused_qkv_rows(QkvLayout layout, int num_q_heads, int num_kv_heads,
                                  int head_dim, const HeadShard& heads) {
  if (layout == QkvLayout::kPerHead) {
    return per_head_qkv_rows(num_q_heads, num_kv_heads, head_dim, heads);
  }
  std::vector<Range> rows;
  const int64_t d = head_dim;
  if (layout == QkvLayout::kConcatenated) {
    // [q; k; v]: q heads from row 0, k heads after all q heads, v heads after all k heads.
    const int64_t k_base = static_cast<int64_t>(num_q_heads) * d;
    const int64_t v_base = k_base + static_cast<int64_t>(num_kv_heads) * d;
    append(rows, heads.q_head_begin * d, heads.q_head_end * d);
    append(rows, k_base + heads.kv_head_begin * d, k_base + heads.kv_head_end * d);
    append(rows, v_base + heads.kv_head_begin * d, v_base + heads.kv_head_end * d);
    return rows;
  }
  // Group-interleaved (InternLM2): KV group j occupies (group_size + 2) heads starting at
  // j * (group_size + 2) * d: its group_size q heads, then its k head, then its v head.
  const int g = heads.group_size;
  const int64_t group_rows = static_cast<int64_t>(g + 2) * d;
  for (int q = heads.q_head_begin; q < heads.q_head_end; ++q) {
    const int64_t begin = (q / g) * group_rows + (q % g) * d;
    append(rows, begin, begin + d);
  }
  for (int kv = heads.kv_head_begin; kv < heads.kv_head_end; ++kv) {
    const int64_t begin = kv * group_rows + g * d;
    append(rows, begin, begin + d);
  }
  for (int kv = heads.kv_head_begin; kv < heads.kv_head_end; ++kv) {
    const int64_t begin = kv * group_rows + (g + 1) * d;
    append(rows, begin, begin + d);
  }
  return rows;
}

Range q_rows(const HeadShard& heads, int head_dim) {
  return {static_cast<int64_t>(heads.q_head_begin) * head_dim,
          static_cast<int64_t>(heads.q_head_end) * head_dim};
}

Range kv_rows(const HeadShard& heads, int head_dim) {
  return {static_cast<int64_t>(heads.kv_head_begin) * head_dim,
          static_cast<int64_t>(heads.kv_head_end) * head_dim};
}

std::vector<Range> fused_gate_up_rows(int64_t intermediate_size, Range units) {
  return {units, {intermediate_size + units.begin, intermediate_size + units.end}};
}

}  // namespace tpserve::parallel
