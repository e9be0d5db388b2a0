// The int8 KV cache (ops.h, Int8KvCache): keys and values quantized per position and KV head as
// they are written, dequantized a block at a time as attention reads them.
//
// Symmetric (scale = max|x| / 127, no zero point), where Qwen v1's use_cache_quantization
// (modeling_qwen.py quantize_cache_v) is asymmetric uint8 with a zero point, and truncates rather
// than rounds: rotated keys and values are roughly centred on zero, so a zero point buys little,
// and without one the score of a key is scale * sum(q_d * code_d) with no offset term. Qwen's
// scale also covers every token one call writes (the whole prompt chunk at prefill); ours is per
// token, so a position's bytes are the same whichever step, chunk or recomputation wrote it.
//
// attention_int8 computes exactly what cpu::attention computes over the dequantized cache
// (code * scale, the same float32 operations in the same order), so the two agree bit for bit;
// each block's codes of one KV head become a float tile once for all the query heads of its group.
#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/row_pool.h"

namespace tpserve::kernels::cpu {

namespace {

// Slot (block * block_size + offset) of position `pos` of sequence `seq`.
int64_t cache_slot(const PagedBatch& batch, int seq, int pos) {
  const int32_t block = batch.block_tables[static_cast<int64_t>(seq) * batch.max_blocks_per_seq +
                                           pos / batch.block_size];
  return static_cast<int64_t>(block) * batch.block_size + pos % batch.block_size;
}

// `count` consecutive slots from `first_slot` of KV head `kv_head` into tile[count][head_dim].
void dequantize_rows(const int8_t* codes, const float* scales, int64_t first_slot, int count,
                     const HeadLayout& heads, int kv_head, float* tile) {
  const int head_dim = heads.head_dim;
  for (int i = 0; i < count; ++i) {
    const int64_t row = (first_slot + i) * heads.num_kv_heads + kv_head;
    const int8_t* code = codes + row * head_dim;
    const float scale = scales[row];
    float* dst = tile + static_cast<int64_t>(i) * head_dim;
    for (int d = 0; d < head_dim; ++d) dst[d] = static_cast<float>(code[d]) * scale;
  }
}

}  // namespace

void quantize_int8(const float* x, int n, int8_t* codes, float* scale) {
  float max_abs = 0.0f;
  for (int d = 0; d < n; ++d) max_abs = std::max(max_abs, std::fabs(x[d]));
  if (max_abs == 0.0f) {
    std::fill(codes, codes + n, int8_t{0});
    *scale = 0.0f;
    return;
  }
  const float s = max_abs / 127.0f;
  for (int d = 0; d < n; ++d) {
    // Round to nearest (ties to even, the default mode, as torch.round).
    const float code = std::clamp(std::nearbyint(x[d] / s), -127.0f, 127.0f);
    codes[d] = static_cast<int8_t>(code);
  }
  *scale = s;
}

void cache_write_int8(const float* key, const float* value, int64_t row_stride,
                      const PagedBatch& batch, const HeadLayout& heads, const Int8KvCache& cache) {
  for (int t = 0; t < batch.num_tokens; ++t) {
    const int64_t slot = cache_slot(batch, batch.token_seq[t], batch.token_pos[t]);
    for (int h = 0; h < heads.num_kv_heads; ++h) {
      const int64_t row = slot * heads.num_kv_heads + h;
      const int64_t column = static_cast<int64_t>(h) * heads.head_dim;
      quantize_int8(key + t * row_stride + column, heads.head_dim,
                    cache.key + row * heads.head_dim, cache.key_scale + row);
      quantize_int8(value + t * row_stride + column, heads.head_dim,
                    cache.value + row * heads.head_dim, cache.value_scale + row);
    }
  }
}

void rope_cache_write_int8(float* qkv, int64_t row_stride, const int32_t* positions,
                           int num_tokens, const HeadLayout& heads, const RopeParams& rope,
                           const PagedBatch& batch, const Int8KvCache& cache) {
  const float* key = rope_queries_and_keys(qkv, row_stride, positions, num_tokens, heads, rope);
  const float* value = key + static_cast<int64_t>(heads.num_kv_heads) * heads.head_dim;
  cache_write_int8(key, value, row_stride, batch, heads, cache);
}

void attention_int8(const float* q, int64_t q_row_stride, const Int8KvCache& cache,
                    const PagedBatch& batch, const HeadLayout& heads, float scale, float* out) {
  const int head_dim = heads.head_dim;
  const int block_size = batch.block_size;
  const int64_t width = static_cast<int64_t>(heads.num_q_heads) * head_dim;
  const auto kv_head_of = [&](int h) {
    return (heads.q_head_begin + h) / heads.group_size - heads.kv_head_begin;
  };
  // Runs of local query heads [first, last) that read one KV head; (token, run) pairs are split
  // over the row threads (the same arithmetic per pair whatever the split).
  std::vector<std::pair<int, int>> runs;
  for (int first = 0, last = 0; first < heads.num_q_heads; first = last) {
    for (last = first + 1; last < heads.num_q_heads && kv_head_of(last) == kv_head_of(first);) {
      ++last;
    }
    runs.emplace_back(first, last);
  }
  const int64_t pairs = static_cast<int64_t>(batch.num_tokens) * static_cast<int64_t>(runs.size());
  parallel_rows(pairs, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores, totals;
    std::vector<float> tile(static_cast<size_t>(block_size) * head_dim);
    for (int64_t pair = begin; pair < end; ++pair) {
      const int t = static_cast<int>(pair / static_cast<int64_t>(runs.size()));
      const auto [first, last] = runs[static_cast<size_t>(pair % static_cast<int64_t>(runs.size()))];
      const int seq = batch.token_seq[t];
      const int context = batch.token_pos[t] + 1;
      const int kv_head = kv_head_of(first);
      const int group = last - first;
      scores.resize(static_cast<size_t>(group) * context);
      totals.assign(static_cast<size_t>(group), 0.0f);
      for (int p0 = 0; p0 < context; p0 += block_size) {
        const int count = std::min(block_size, context - p0);
        dequantize_rows(cache.key, cache.key_scale, cache_slot(batch, seq, p0), count, heads,
                        kv_head, tile.data());
        for (int g = 0; g < group; ++g) {
          const float* query = q + t * q_row_stride + static_cast<int64_t>(first + g) * head_dim;
          float* row_scores = scores.data() + static_cast<int64_t>(g) * context + p0;
          for (int i = 0; i < count; ++i) {
            const float* key = tile.data() + static_cast<int64_t>(i) * head_dim;
            row_scores[i] = dot_product(query, key, head_dim) * scale;
          }
        }
      }
      for (int g = 0; g < group; ++g) {
        float* row_scores = scores.data() + static_cast<int64_t>(g) * context;
        float max_score = -INFINITY;
        for (int p = 0; p < context; ++p) max_score = std::max(max_score, row_scores[p]);
        float total = 0.0f;
        for (int p = 0; p < context; ++p) {
          row_scores[p] = std::exp(row_scores[p] - max_score);
          total += row_scores[p];
        }
        totals[static_cast<size_t>(g)] = total;
        float* dst = out + t * width + static_cast<int64_t>(first + g) * head_dim;
        std::fill(dst, dst + head_dim, 0.0f);
      }
      for (int p0 = 0; p0 < context; p0 += block_size) {
        const int count = std::min(block_size, context - p0);
        dequantize_rows(cache.value, cache.value_scale, cache_slot(batch, seq, p0), count, heads,
                        kv_head, tile.data());
        for (int g = 0; g < group; ++g) {
          const float* row_scores = scores.data() + static_cast<int64_t>(g) * context + p0;
          float* dst = out + t * width + static_cast<int64_t>(first + g) * head_dim;
          for (int i = 0; i < count; ++i) {
            const float* value_row = tile.data() + static_cast<int64_t>(i) * head_dim;
            const float weight = row_scores[i] / totals[static_cast<size_t>(g)];
            for (int d = 0; d < head_dim; ++d) dst[d] += weight * value_row[d];
          }
        }
      }
    }
  });
}

}  // namespace tpserve::kernels::cpu
