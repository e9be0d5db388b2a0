// Causal attention over the paged KV cache, one (query token, head) at a time, the pairs split over
// the row threads (row_pool.h): softmax(q.K^T * scale) V over
// positions 0..pos of the token's sequence, keys found through the block table. Numerically the
// usual max-subtracted softmax in float32.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/row_pool.h"

namespace tpserve::kernels::cpu {

namespace {

// Offset (in elements) of position `pos`, local KV head `kv_head` in a layer's cache.
int64_t cache_offset(const PagedBatch& batch, const HeadLayout& heads, int seq, int pos,
                     int kv_head) {
  const int32_t block = batch.block_tables[static_cast<int64_t>(seq) * batch.max_blocks_per_seq +
                                           pos / batch.block_size];
  const int64_t slot = static_cast<int64_t>(block) * batch.block_size + pos % batch.block_size;
  return (slot * heads.num_kv_heads + kv_head) * heads.head_dim;
}

}  // namespace

// q . k over n elements in 8 independent partial sums (the compiler vectorizes them; one running
// sum would be a chain of dependent adds), added pairwise, then the tail.
float dot_product(const float* q, const float* k, int n) {
  float partial[8] = {};
  int d = 0;
  for (; d + 8 <= n; d += 8) {
    for (int u = 0; u < 8; ++u) partial[u] += q[d + u] * k[d + u];
  }
  float sum = ((partial[0] + partial[1]) + (partial[2] + partial[3])) +
              ((partial[4] + partial[5]) + (partial[6] + partial[7]));
  for (; d < n; ++d) sum += q[d] * k[d];
  return sum;
}


void cache_write(const float* key, const float* value, int64_t row_stride,
                 const PagedBatch& batch, const HeadLayout& heads, float* key_cache,
                 float* value_cache) {
  const int64_t width = static_cast<int64_t>(heads.num_kv_heads) * heads.head_dim;
  for (int t = 0; t < batch.num_tokens; ++t) {
    const int64_t offset = cache_offset(batch, heads, batch.token_seq[t], batch.token_pos[t], 0);
    std::memcpy(key_cache + offset, key + t * row_stride, sizeof(float) * width);
    std::memcpy(value_cache + offset, value + t * row_stride, sizeof(float) * width);
  }
}

void attention(const float* q, int64_t q_row_stride, const float* key_cache,
               const float* value_cache, const PagedBatch& batch, const HeadLayout& heads,
               float scale, float* out) {
  const int head_dim = heads.head_dim;
  const int64_t width = static_cast<int64_t>(heads.num_q_heads) * head_dim;
  // Each (token, query head) is independent: the pairs are split over the row threads (the same
  // arithmetic per pair whatever the split, so the result does not depend on the thread count).
  const int64_t pairs = static_cast<int64_t>(batch.num_tokens) * heads.num_q_heads;
  parallel_rows(pairs, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t pair = begin; pair < end; ++pair) {
      const int t = static_cast<int>(pair / heads.num_q_heads);
      const int h = static_cast<int>(pair % heads.num_q_heads);
      const int seq = batch.token_seq[t];
      const int context = batch.token_pos[t] + 1;
      scores.resize(context);
      const int kv_head = (heads.q_head_begin + h) / heads.group_size - heads.kv_head_begin;
      const float* query = q + t * q_row_stride + h * head_dim;
      float max_score = -INFINITY;
      for (int p = 0; p < context; ++p) {
        const float* key = key_cache + cache_offset(batch, heads, seq, p, kv_head);
        scores[p] = dot_product(query, key, head_dim) * scale;
        max_score = std::max(max_score, scores[p]);
      }
      float total = 0.0f;
      for (int p = 0; p < context; ++p) {
        scores[p] = std::exp(scores[p] - max_score);
        total += scores[p];
      }
      float* dst = out + t * width + h * head_dim;
      std::fill(dst, dst + head_dim, 0.0f);
      for (int p = 0; p < context; ++p) {
        const float* value_row = value_cache + cache_offset(batch, heads, seq, p, kv_head);
        const float weight = scores[p] / total;
        for (int d = 0; d < head_dim; ++d) dst[d] += weight * value_row[d];
      }
    }
  });
}

}  // namespace tpserve::kernels::cpu
