#include "runtime/formats/ggml_blocks.h"

#include <cstring>

#include "common/check.h"
#include "common/dtype.h"

namespace tpserve::runtime {

namespace {

// Superblock size of the K-quants (QK_K) and bytes of their packed 6-bit scales (K_SCALE_SIZE).
constexpr int kSuper = 256;
constexpr int kScaleBytes = 12;

uint16_t u16_at(const std::byte* p) {
  uint16_t value;
  std::memcpy(&value, p, sizeof(value));  // GGUF is little-endian, as is every host we build for
  return value;
}
float f16_at(const std::byte* p) { return f16_to_f32(u16_at(p)); }
uint8_t u8_at(const std::byte* p) { return std::to_integer<uint8_t>(*p); }

// block_q8_0 { half d; int8 qs[32]; }: x = d * q.
void q8_0(const std::byte* b, float* y) {
  const float d = f16_at(b);
  for (int i = 0; i < 32; ++i) y[i] = d * static_cast<float>(static_cast<int8_t>(u8_at(b + 2 + i)));
}

// block_q4_0 { half d; uint8 qs[16]; }: value i < 16 is the low nibble of qs[i], value i + 16 the
// high nibble; x = d * (q - 8).
void q4_0(const std::byte* b, float* y) {
  const float d = f16_at(b);
  for (int i = 0; i < 16; ++i) {
    const uint8_t q = u8_at(b + 2 + i);
    y[i] = d * static_cast<float>((q & 0xF) - 8);
    y[i + 16] = d * static_cast<float>((q >> 4) - 8);
  }
}

// block_q4_1 { half d; half m; uint8 qs[16]; }: nibbles as Q4_0; x = d * q + m.
void q4_1(const std::byte* b, float* y) {
  const float d = f16_at(b);
  const float m = f16_at(b + 2);
  for (int i = 0; i < 16; ++i) {
    const uint8_t q = u8_at(b + 4 + i);
    y[i] = d * static_cast<float>(q & 0xF) + m;
    y[i + 16] = d * static_cast<float>(q >> 4) + m;
  }
}

// The j-th of eight 6-bit (scale, min) pairs packed in 12 bytes (ggml's get_scale_min_k4): pairs
// 0-3 are the low 6 bits of bytes j and j + 4; pairs 4-7 take their low 4 bits from byte j + 4 and
// their top 2 bits from the spare high bits of bytes j - 4 and j.
void scale_min_k4(int j, const std::byte* scales, int& scale, int& min) {
  const auto q = [&](int i) { return static_cast<int>(u8_at(scales + i)); };
  if (j < 4) {
    scale = q(j) & 63;
    min = q(j + 4) & 63;
  } else {
    scale = (q(j + 4) & 0xF) | ((q(j - 4) >> 6) << 4);
    min = (q(j + 4) >> 4) | ((q(j) >> 6) << 4);
  }
}

// block_q4_K { half d; half dmin; uint8 scales[12]; uint8 qs[128]; } and
// block_q5_K { half d; half dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128]; }: eight
// sub-blocks of 32, each x = d * scale * q - dmin * min; every 32 bytes of qs hold two sub-blocks
// (low, then high nibbles). Q5_K adds a fifth bit per value from qh: bit 2 * pair for the
// low-nibble sub-block, 2 * pair + 1 for the high one. `qh` is null for Q4_K.
void q4_or_q5_k(const std::byte* b, const std::byte* qh, const std::byte* qs, float* y) {
  const float d = f16_at(b);
  const float dmin = f16_at(b + 2);
  const std::byte* scales = b + 4;
  for (int pair = 0; pair < 4; ++pair) {
    int sc1, m1, sc2, m2;
    scale_min_k4(2 * pair, scales, sc1, m1);
    scale_min_k4(2 * pair + 1, scales, sc2, m2);
    for (int l = 0; l < 32; ++l) {
      const uint8_t q = u8_at(qs + 32 * pair + l);
      const int high = qh == nullptr ? 0 : u8_at(qh + l);
      const int low_value = (q & 0xF) + (((high >> (2 * pair)) & 1) << 4);
      const int high_value = (q >> 4) + (((high >> (2 * pair + 1)) & 1) << 4);
      y[64 * pair + l] = d * sc1 * static_cast<float>(low_value) - dmin * m1;
      y[64 * pair + 32 + l] = d * sc2 * static_cast<float>(high_value) - dmin * m2;
    }
  }
}
void q4_k(const std::byte* b, float* y) { q4_or_q5_k(b, nullptr, b + 4 + kScaleBytes, y); }
void q5_k(const std::byte* b, float* y) {
  const std::byte* qh = b + 4 + kScaleBytes;
  q4_or_q5_k(b, qh, qh + 32, y);
}

// block_q6_K { uint8 ql[128]; uint8 qh[64]; int8 scales[16]; half d; }: two halves of 128 values;
// in each, value l + 32 * k (k = 0..3) takes 4 low bits from ql (nibble k / 2 of byte l + 32 * (k % 2))
// and 2 high bits from qh[l] (bits 2k, 2k + 1); x = d * scales[sub-block of 16] * (q - 32).
void q6_k(const std::byte* b, float* y) {
  const std::byte* ql = b;
  const std::byte* qh = b + 128;
  const std::byte* scales = b + 192;
  const float d = f16_at(b + 208);
  for (int half = 0; half < 2; ++half) {
    for (int l = 0; l < 32; ++l) {
      const int high = u8_at(qh + 32 * half + l);
      const int low0 = u8_at(ql + 64 * half + l);
      const int low1 = u8_at(ql + 64 * half + 32 + l);
      const int q[4] = {(low0 & 0xF) | (((high >> 0) & 3) << 4), (low1 & 0xF) | (((high >> 2) & 3) << 4),
                        (low0 >> 4) | (((high >> 4) & 3) << 4), (low1 >> 4) | (((high >> 6) & 3) << 4)};
      for (int k = 0; k < 4; ++k) {
        const int scale = static_cast<int8_t>(u8_at(scales + 8 * half + l / 16 + 2 * k));
        y[128 * half + 32 * k + l] = d * static_cast<float>(scale * (q[k] - 32));
      }
    }
  }
}

}  // namespace

std::optional<GgmlTypeTraits> ggml_type_traits(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kF32: return GgmlTypeTraits{"F32", 1, 4};
    case GgmlType::kF16: return GgmlTypeTraits{"F16", 1, 2};
    case GgmlType::kBF16: return GgmlTypeTraits{"BF16", 1, 2};
    case GgmlType::kQ8_0: return GgmlTypeTraits{"Q8_0", 32, 34};
    case GgmlType::kQ4_0: return GgmlTypeTraits{"Q4_0", 32, 18};
    case GgmlType::kQ4_1: return GgmlTypeTraits{"Q4_1", 32, 20};
    case GgmlType::kQ4_K: return GgmlTypeTraits{"Q4_K", kSuper, 4 + kScaleBytes + 128};
    case GgmlType::kQ5_K: return GgmlTypeTraits{"Q5_K", kSuper, 4 + kScaleBytes + 32 + 128};
    case GgmlType::kQ6_K: return GgmlTypeTraits{"Q6_K", kSuper, 128 + 64 + 16 + 2};
  }
  return std::nullopt;
}

std::optional<DType> ggml_float_dtype(GgmlType type) {
  switch (type) {
    case GgmlType::kF32: return DType::kF32;
    case GgmlType::kF16: return DType::kF16;
    case GgmlType::kBF16: return DType::kBF16;
    default: return std::nullopt;
  }
}

std::string_view ggml_type_name(uint32_t type) {
  if (auto traits = ggml_type_traits(type)) return traits->name;
  // The rest of ggml.h's enum, so that an error names what the file holds.
  static constexpr std::string_view kOthers[] = {
      "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K",
      "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S",
      "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16", "Q4_0_4_4", "Q4_0_4_8",
      "Q4_0_8_8", "TQ1_0", "TQ2_0"};
  if (type < std::size(kOthers)) return kOthers[type];
  return "an unknown type";
}

int ggml_packed_bits(GgmlType type) {
  switch (type) {
    case GgmlType::kQ4_0:
    case GgmlType::kQ4_1: return 4;
    case GgmlType::kQ8_0: return 8;
    default: return 0;
  }
}

void unpack_block(GgmlType type, const std::byte* b, PackedBlock& out) {
  out.scale = f16_at(b);
  switch (type) {
    case GgmlType::kQ8_0:
      out.min = -128.0f * out.scale;
      for (int i = 0; i < 32; ++i) {
        out.codes[i] = static_cast<uint8_t>(static_cast<int8_t>(u8_at(b + 2 + i)) + 128);
      }
      return;
    case GgmlType::kQ4_0:
    case GgmlType::kQ4_1: {
      const bool q4_1 = type == GgmlType::kQ4_1;
      out.min = q4_1 ? f16_at(b + 2) : -8.0f * out.scale;
      const std::byte* qs = b + (q4_1 ? 4 : 2);
      for (int i = 0; i < 16; ++i) {  // value i: low nibble of qs[i]; value i + 16: its high nibble
        const uint8_t q = u8_at(qs + i);
        out.codes[i] = q & 0xF;
        out.codes[i + 16] = q >> 4;
      }
      return;
    }
    default: break;
  }
  TPS_CHECK(false, "unpack_block: ggml type {} is not a packed type", static_cast<uint32_t>(type));
}

void dequantize_blocks(GgmlType type, const std::byte* src, int64_t blocks, float* out) {
  const std::optional<GgmlTypeTraits> traits = ggml_type_traits(static_cast<uint32_t>(type));
  TPS_CHECK(traits.has_value(), "dequantize_blocks: ggml type {} is not decodable",
            static_cast<uint32_t>(type));
  switch (type) {
    case GgmlType::kF32: convert_to_f32(DType::kF32, src, out, blocks); return;
    case GgmlType::kF16: convert_to_f32(DType::kF16, src, out, blocks); return;
    case GgmlType::kBF16: convert_to_f32(DType::kBF16, src, out, blocks); return;
    default: break;
  }
  void (*decode)(const std::byte*, float*) = nullptr;
  switch (type) {
    case GgmlType::kQ8_0: decode = q8_0; break;
    case GgmlType::kQ4_0: decode = q4_0; break;
    case GgmlType::kQ4_1: decode = q4_1; break;
    case GgmlType::kQ4_K: decode = q4_k; break;
    case GgmlType::kQ5_K: decode = q5_k; break;
    case GgmlType::kQ6_K: decode = q6_k; break;
    default: break;
  }
  for (int64_t block = 0; block < blocks; ++block) {
    decode(src + block * traits->block_bytes, out + block * traits->block_values);
  }
}

}  // namespace tpserve::runtime
