// ggml's tensor element types as GGUF stores them, and the decoding of their blocks to float32.
// Every block layout lives here (facts from ggml's ggml-common.h and ggml-quants.c): a quantized
// row is a run of blocks, each holding `block_values` values in `block_bytes` bytes, and a row's
// length is a whole number of blocks. This is the one place that knows the bit layouts, so that a
// later packed (kept-quantized) load of Q8_0 / Q4_0 / Q4_1 reads the same facts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "common/dtype.h"

namespace tpserve::runtime {

// ggml_type values (ggml.h); only the ones tpserve can decode are named.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ8_0 = 8,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kBF16 = 30,
};

struct GgmlTypeTraits {
  std::string_view name;  // "Q4_1", as ggml names it
  int64_t block_values;   // values per block (1 for the plain float types)
  int64_t block_bytes;    // bytes per block
};

// The layout of a decodable type, or nullopt for any other ggml_type value.
std::optional<GgmlTypeTraits> ggml_type_traits(uint32_t type);

// The plain float types as DType (F32, F16, BF16): blocks of them can be copied as stored.
// nullopt for every block type.
std::optional<DType> ggml_float_dtype(GgmlType type);

// ggml's name of any ggml_type value ("Q5_0", "IQ2_XS", ...), for errors; "type N" when unknown.
std::string_view ggml_type_name(uint32_t type);

// The simple 32-value block types a kernel can read as they are (Q8_0, Q4_0, Q4_1): one scale and
// one offset per block, one code per value, w = scale * code + min.
constexpr int64_t kPackedBlockValues = 32;
struct PackedBlock {
  uint8_t codes[kPackedBlockValues];  // value i's code, in value order (0..15, or 0..255 for Q8_0)
  float scale = 0.0f;
  float min = 0.0f;
};

// Bits per code of a packed type (4 for Q4_0 / Q4_1, 8 for Q8_0), 0 for every other type.
int ggml_packed_bits(GgmlType type);

// Unpacks one block of a packed type at `src` (unaligned is fine), so that
// fmaf(scale, codes[i], min) is the value dequantize_blocks gives (bit for bit for Q8_0 and Q4_0,
// whose min is an exact multiple of the scale; Q4_1's d * q + m rounds once instead of twice):
//   Q4_0 x = d * (q - 8)          -> code q, scale d, min -8 d
//   Q8_0 x = d * q, q signed int8 -> code q + 128, scale d, min -128 d
//   Q4_1 x = d * q + m            -> code q, scale d, min m
void unpack_block(GgmlType type, const std::byte* src, PackedBlock& out);

// Decodes `blocks` consecutive blocks of `type` (a decodable type) at `src` (unaligned is fine)
// into blocks * block_values floats at `out`.
void dequantize_blocks(GgmlType type, const std::byte* src, int64_t blocks, float* out);

}  // namespace tpserve::runtime
