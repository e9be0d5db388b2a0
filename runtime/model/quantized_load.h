// Reading one rank's shard of a GPTQ or AWQ linear weight into the quantized representation
// (kernels/quantized.h), touching only the packed words, zero points and scales of its own rows
// (output features) and columns (input features).
//
// The layouts, as the formats' own code writes them:
//   GPTQ (AutoGPTQ qlinear_cuda.py QuantLinear.pack; GPTQModel, optimum alike)
//     qweight [in / (32 / bits), out] int32: input k in word k / (32/bits), bits (k % (32/bits)) * bits
//     qzeros  [groups, out / (32 / bits)] int32, packed the same way along the output; the stored
//             value is zero - 1 for checkpoint_format "gptq" (dequantization adds 1), the zero for
//             "gptq_v2"
//     scales  [groups, out] (F16); g_idx [in] int32: the group of input k (act-order), groups =
//             ceil(in / group_size), group_size -1 meaning one group
//     W[n][k] = scales[g][n] * (q(k, n) - zero(g, n)),  g = g_idx[k]
//   AWQ GEMM (AutoAWQ WQLinear_GEMM.from_linear, packing_utils.dequantize_gemm)
//     qweight [in, out / 8] int32, qzeros [groups, out / 8] int32: 8 outputs per word, output
//             8 j + order_map[i] at bits 4 i with order_map = [0, 2, 4, 6, 1, 3, 5, 7]
//     scales  [groups, out]; W[n][k] = scales[k / group_size][n] * (q - zero), 4 bits only
#pragma once

#include <string>
#include <vector>

#include "kernels/quantized_host.h"
#include "runtime/config/quant_config.h"
#include "runtime/formats/safetensors.h"
#include "runtime/model/weight_plan.h"

namespace tpserve::runtime {

// "model.layers.0.mlp.down_proj.weight" -> "model.layers.0.mlp.down_proj" (the quantized tensors'
// common prefix).
std::string quantized_prefix(const std::string& weight_tensor);

// GGUF (QuantMethod::kGguf): a linear shard whose blocks are all Q8_0 / Q4_0 / Q4_1 loads packed,
// group = ggml's 32-value block; one of 8-bit and 4-bit blocks (a fused q/k/v of mixed types)
// holds every code in 8 bits, which is exact; a shard with any other block type is decoded to
// floats. Column-parallel shards take whole rows (in the view's row order: llama's q/k rows are
// reordered codes, scales and mins together); row-parallel ones cut the input between blocks.

// The bits of the codes a linear shard is planned with: GPTQ / AWQ's bits for every linear
// weight, for GGUF the widest of its blocks' packed types when all are packed; 0 = floats.
int planned_bits(const WeightShard& weight, const QuantConfig& quant);

// Whether the checkpoint stores this linear shard quantized (<prefix>.qweight present for its
// blocks). Throws kInvalidArgument naming the tensors when its blocks disagree, or when a qweight
// comes without a quantization config.
bool shard_is_quantized(const Checkpoint& checkpoint, const QuantConfig& quant,
                        const WeightShard& weight);

// Checks every quantized tensor of a quantized shard's blocks against the config before any byte
// is read: present, I32 / float dtypes, shapes implied by the full [out, in] matrix, the block's
// ranges on packing boundaries. kInvalidArgument naming the file, the tensor and both shapes.
void validate_quantized_shard(const Checkpoint& checkpoint, const QuantConfig& quant,
                              const WeightShard& weight);

// The rank's shard: its blocks stacked along the output rows, its input columns. Column shards'
// blocks must share one g_idx (they do when one input feeds them, as GPTQ quantizes q/k/v and
// gate/up from the same activations); a row shard keeps only the groups its columns use.
kernels::QuantizedHostMatrix read_quantized_shard(const Checkpoint& checkpoint,
                                                  const QuantConfig& quant,
                                                  const WeightShard& weight);

// The names of a linear weight's quantized tensors ("<prefix>.qweight", ...), for strict tensor
// accounting.
std::vector<std::string> quantized_tensor_names(const std::string& weight_tensor);

}  // namespace tpserve::runtime
