// cache_write_int8: the twin of cache_write_int8 in kernels/cpu/kv_int8.cc. Grid (token, local KV
// head), 64 threads: warp 0 quantizes the token's key head, warp 1 its value head, into the cache
// slot of the token's position (quantize_head_int8, kv_int8.cuh). A head is a few hundred bytes,
// so one warp reads it twice (max, then codes) rather than staging it.
#include "kernels/cuda/kv_int8.cuh"
#include "kernels/cuda/kv_int8.h"

namespace tpserve::kernels::cuda {

namespace {

template <typename T>
__global__ void __launch_bounds__(64)
    cache_write_int8_kernel(const T* key, const T* value, int64_t row_stride,
                            const int32_t* token_seq, const int32_t* token_pos,
                            const int32_t* block_tables, int max_blocks_per_seq, int block_size,
                            int num_kv_heads, int head_dim, Int8KvCache cache) {
  const int t = blockIdx.x, kv_head = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int pos = token_pos[t];
  const int32_t block =
      block_tables[static_cast<int64_t>(token_seq[t]) * max_blocks_per_seq + pos / block_size];
  const int64_t slot = static_cast<int64_t>(block) * block_size + pos % block_size;
  const int64_t row = slot * num_kv_heads + kv_head;  // index of the (slot, head) scale
  const int64_t column = static_cast<int64_t>(kv_head) * head_dim;
  const T* x = (warp == 0 ? key : value) + t * row_stride + column;
  int8_t* codes = (warp == 0 ? cache.key : cache.value) + row * head_dim;
  float* scale = (warp == 0 ? cache.key_scale : cache.value_scale) + row;
  quantize_head_int8(x, head_dim, codes, scale, lane);
}

}  // namespace

void launch_cache_write_int8(DType dtype, cudaStream_t stream, const void* key, const void* value,
                             int64_t row_stride, const PagedBatch& batch, const HeadLayout& heads,
                             const Int8KvCache& cache) {
  if (batch.num_tokens <= 0 || heads.num_kv_heads <= 0) return;
  const dim3 grid(batch.num_tokens, heads.num_kv_heads);
  TPSERVE_DISPATCH_DTYPE(dtype, T, {
    cache_write_int8_kernel<T><<<grid, 64, 0, stream>>>(
        static_cast<const T*>(key), static_cast<const T*>(value), row_stride, batch.token_seq,
        batch.token_pos, batch.block_tables, batch.max_blocks_per_seq, batch.block_size,
        heads.num_kv_heads, heads.head_dim, cache);
  });
  TPSERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace tpserve::kernels::cuda
