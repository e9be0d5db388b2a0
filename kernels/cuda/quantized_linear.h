// The CUDA quantized linear (kernels/quantized.h's representation), out[M, N] = x[M, K] W^T (+ bias):
//
//   - M <= 64 on a matrix the fused kernel takes (fused_quantized_fits): one kernel reads every
//     packed weight once per 32 rows of x, dequantizes it in registers and multiplies on the
//     tensor cores (mma.sync m16n8k16, float32 accumulation). Weights are the mma's A operand
//     (16 output rows per tile) and x its B operand (8 tokens per tile), so a decode batch of 1-8
//     tokens wastes no tensor-core work on padding rows of x. The K dimension is split over the
//     block's 8 warps and, when the rows alone would not fill the GPU, over blocks (float32
//     partials that the last block of each row block to finish sums, adding the bias).
//   - otherwise (prefill, or a matrix the fused kernel does not take): row chunks of W are
//     dequantized into a scratch buffer in the compute dtype and multiplied by cuBLASLt.
//
// prepare (launch_prepare_quantized, once at load) rewrites the codes for these kernels:
//   - 4-bit: each 32-bit word of 8 columns is re-packed so that columns 0, 2, 4, 6 sit in its low
//     16 bits and 1, 3, 5, 7 in its high 16 bits (paired_nibbles). One AND-OR with 0x000F000F
//     then yields two adjacent columns as the low mantissa bits of a bf16x2 / half2 pair, the
//     dequantization's only integer step.
//   - zero points: where every group's min is -scale * an integer zero (GPTQ, AWQ, GGUF Q4_0 and
//     Q8_0), the mins are replaced by the zeros (zero_points) and W = scale * (code - zero) is
//     computed exactly but for one rounding; a min rounded to bf16 on its own would shift every
//     weight of its group by up to 2^-9 |min|, several times the weight's own rounding.
//   - act-order (GPTQ desc_act): the columns are sorted by group, so every group is one run of
//     group_size columns again, and x's columns are gathered in the same order before the fused
//     kernel runs (input_order). Only a group index where every group has exactly group_size
//     columns (what GPTQ writes) is sorted; any other stays as it is, for the dequantizing path.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"
#include "kernels/quantized.h"

namespace tpserve::kernels::cuda {

// Re-packs `codes` (rows x code_row_bytes, on the device) in place for the kernels above: the
// column order `order` (cols entries on the device, or nullptr to keep the order) and, for 4 bits,
// the paired nibbles. Needs cols % 8 == 0 (4 bits) or cols % 4 == 0 (8 bits); `scratch` holds
// rows x code_row_bytes bytes when order is given (unused otherwise).
void launch_prepare_quantized(cudaStream_t stream, uint8_t* codes, int bits, int64_t rows,
                              int64_t cols, const int32_t* order, bool pair_nibbles,
                              uint8_t* scratch);

// Whether the fused kernel takes this matrix with x at `x`: groups of a multiple of 32 columns
// in column order (no group_index left after prepare), cols % 32 == 0, 4-bit codes paired, and
// x 16-byte aligned.
bool fused_quantized_fits(const QuantizedMatrix& w, const void* x);

// How one fused call is cut: blocks of 32 output rows x `splits` ranges of K.
struct QuantizedGemvPlan {
  int splits = 1;
  int64_t k_per_split = 0;    // a multiple of 32
  size_t partial_bytes = 0;   // float32 partials when splits > 1
  int64_t row_blocks = 0;     // blocks of 32 rows: one arrival counter each when splits > 1
};
// m <= 32 (the caller cuts larger batches). K is split until there are about
// blocks_per_sm * num_sms blocks (4 unless the environment's TPSERVE_QUANT_BLOCKS_PER_SM, a
// benchmark knob, says otherwise), each warp keeping at least one 128-column step.
QuantizedGemvPlan plan_quantized_gemv(const QuantizedMatrix& w, int m, int num_sms);
int quantized_blocks_per_sm();
// Whether each warp loads its next step's weights while it computes the current one (true unless
// the environment's TPSERVE_QUANT_PREFETCH is 0, a benchmark knob).
bool quantized_prefetch();

// partials: plan.partial_bytes of scratch; arrivals: plan.row_blocks counters, zero before the
// first call (each call leaves them zero again).
void launch_quantized_gemv(DType dtype, cudaStream_t stream, const QuantizedGemvPlan& plan,
                           const void* x, const QuantizedMatrix& w, const void* bias, int m,
                           void* out, float* partials, unsigned* arrivals);

// out[i, j] = x[i, order[j]] for i < m, j < k (act-order matrices' input).
void launch_gather_columns(DType dtype, cudaStream_t stream, const void* x, int m, int64_t k,
                           const int32_t* order, void* out);

// out[r, c] = W[row_begin + r][c] in the compute dtype for r < rows, c < w.cols, in input column
// order (act-order un-permuted), for any prepared or unprepared matrix.
void launch_dequantize_rows(DType dtype, cudaStream_t stream, const QuantizedMatrix& w,
                            int64_t row_begin, int64_t rows, void* out);

}  // namespace tpserve::kernels::cuda
