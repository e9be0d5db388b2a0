// Rotary position embedding. The angle of pair i at position p is p * inv_freq[i], computed in
// float32 as transformers does (freqs = position.float() @ inv_freq). Two pairings exist:
//   rotate_half (LLaMA, Qwen, InternLM2): dim i pairs with dim i + rotary_dim / 2;
//   interleaved (ChatGLM2/3): dim 2i pairs with dim 2i + 1.
// Dims past rotary_dim pass through unchanged (ChatGLM rotates half of each head). The optional
// per-token factors (ops.h: dynamic NTK's frequency_scale, logn's query_scale) are applied here in
// float32, the twin of the CUDA kernels.
#include <cmath>

#include "kernels/cpu/cpu_ops.h"

namespace tpserve::kernels::cpu {

void rope(float* x, int64_t row_stride, const int32_t* positions, int num_tokens, int num_heads,
          const RopeParams& params) {
  const int half = params.rotary_dim / 2;
  for (int t = 0; t < num_tokens; ++t) {
    const float position = static_cast<float>(positions[t]);
    const float growth = params.frequency_scale != nullptr ? params.frequency_scale[t] : 1.0f;
    for (int h = 0; h < num_heads; ++h) {
      float* head = x + t * row_stride + static_cast<int64_t>(h) * params.head_dim;
      for (int i = 0; i < half; ++i) {
        // Dynamic NTK: base^(-2i/d) * g^(-2i/(d-2)) is (base * g^(d/(d-2)))^(-2i/d).
        const float frequency =
            growth == 1.0f ? params.inv_freq[i]
                           : params.inv_freq[i] *
                                 std::pow(growth, -static_cast<float>(2 * i) /
                                                      static_cast<float>(params.rotary_dim - 2));
        const float angle = position * frequency;
        const float cos = std::cos(angle) * params.attention_scaling;
        const float sin = std::sin(angle) * params.attention_scaling;
        const int a = params.interleaved ? 2 * i : i;
        const int b = params.interleaved ? 2 * i + 1 : i + half;
        const float xa = head[a];
        const float xb = head[b];
        head[a] = xa * cos - xb * sin;
        head[b] = xb * cos + xa * sin;
      }
      if (params.query_scale != nullptr) {
        for (int d = 0; d < params.head_dim; ++d) head[d] *= params.query_scale[t];
      }
    }
  }
}

float* rope_queries_and_keys(float* qkv, int64_t row_stride, const int32_t* positions,
                             int num_tokens, const HeadLayout& heads, const RopeParams& rope) {
  float* key = qkv + static_cast<int64_t>(heads.num_q_heads) * heads.head_dim;
  cpu::rope(qkv, row_stride, positions, num_tokens, heads.num_q_heads, rope);
  RopeParams key_rope = rope;
  key_rope.query_scale = nullptr;  // the query's factor; keys are cached as rotated
  cpu::rope(key, row_stride, positions, num_tokens, heads.num_kv_heads, key_rope);
  return key;
}

// The composition the CUDA kernel fuses: q then k rotated in place, then k and v into the cache.
void rope_cache_write(float* qkv, int64_t row_stride, const int32_t* positions, int num_tokens,
                      const HeadLayout& heads, const RopeParams& rope, const PagedBatch& batch,
                      float* key_cache, float* value_cache) {
  const float* key = rope_queries_and_keys(qkv, row_stride, positions, num_tokens, heads, rope);
  const float* value = key + static_cast<int64_t>(heads.num_kv_heads) * heads.head_dim;
  cache_write(key, value, row_stride, batch, heads, key_cache, value_cache);
}

}  // namespace tpserve::kernels::cpu
