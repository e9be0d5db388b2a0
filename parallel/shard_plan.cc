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

Range even_split(int64_t n, int parts, int index) {
  TPS_CHECK(parts > 0 && index >= 0 && index < parts, "even_split({}, {}, {})", n, parts, index);
  return {index * n / parts, (index + 1) * n / parts};
}

HeadShard shard_heads(int num_q_heads, int num_kv_heads, int tp_size, int rank) {
  TPS_CHECK(tp_size > 0 && rank >= 0 && rank < tp_size, "rank {} of {}", rank, tp_size);
  if (num_q_heads <= 0 || num_kv_heads <= 0 || num_q_heads % num_kv_heads != 0) {
    raise(ErrorCode::kInvalidArgument,
          "num_attention_heads ({}) must be a positive multiple of num_key_value_heads ({})",
          num_q_heads, num_kv_heads);
  }
  if (num_q_heads % tp_size != 0) {
    std::string valid;
    for (int n = 1; n <= num_q_heads; ++n) {
      if (num_q_heads % n == 0) valid += (valid.empty() ? "" : ", ") + std::to_string(n);
    }
    raise(ErrorCode::kInvalidArgument,
          "tensor-parallel size {} does not divide the {} query heads (num_attention_heads); "
          "valid sizes: {}",
          tp_size, num_q_heads, valid);
  }
  HeadShard shard;
  const int per_rank = num_q_heads / tp_size;
  shard.group_size = num_q_heads / num_kv_heads;
  shard.q_head_begin = rank * per_rank;
  shard.q_head_end = shard.q_head_begin + per_rank;
  shard.kv_head_begin = shard.q_head_begin / shard.group_size;
  shard.kv_head_end = (shard.q_head_end - 1) / shard.group_size + 1;
  return shard;
}

VocabShard shard_vocab(int64_t vocab_size, int tp_size, int rank) {
  TPS_CHECK(tp_size > 0 && rank >= 0 && rank < tp_size, "rank {} of {}", rank, tp_size);
  VocabShard shard;
  shard.padded_rows = (vocab_size + tp_size - 1) / tp_size;
  shard.begin = std::min<int64_t>(vocab_size, rank * shard.padded_rows);
  shard.end = std::min<int64_t>(vocab_size, shard.begin + shard.padded_rows);
  return shard;
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

std::vector<Range> fused_gate_up_rows(int64_t intermediate_size, int tp_size, int rank) {
  const Range units = even_split(intermediate_size, tp_size, rank);
  return {units, {intermediate_size + units.begin, intermediate_size + units.end}};
}

}  // namespace tpserve::parallel
