#include "runtime/model/quantized_load.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <map>

#include "common/error.h"

namespace tpserve::runtime {

namespace {

// AutoAWQ packs output 8 j + order_map[i] into bits 4 i of word j (order_map = [0, 2, 4, 6, 1, 3,
// 5, 7], WQLinear_GEMM.from_linear); output 8 j + o therefore sits in slot kAwqSlot[o]
// (packing_utils.py's AWQ_REVERSE_ORDER).
constexpr int kAwqSlot[8] = {0, 4, 1, 5, 2, 6, 3, 7};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The group size over the full input (group_size -1: one group of every input column).
int64_t full_group(const QuantConfig& q, int64_t in) { return q.group_size > 0 ? q.group_size : in; }

struct Names {
  std::string qweight, qzeros, scales, g_idx;
};
Names names_of(const std::string& weight_tensor) {
  const std::string p = quantized_prefix(weight_tensor);
  return {p + ".qweight", p + ".qzeros", p + ".scales", p + ".g_idx"};
}

void expect(const Checkpoint& c, const std::string& name, bool integer,
            const std::vector<int64_t>& shape, const std::string& meaning) {
  const TensorEntry& entry = c.tensor(name);  // kNotFound names the tensor
  const std::string file = c.file_of(name).path().string();
  if (integer ? entry.dtype != DType::kI32 : !is_weight_dtype(entry.dtype)) {
    raise(ErrorCode::kInvalidArgument, "{}: tensor '{}' has dtype {}; expected {}", file, name,
          dtype_name(entry.dtype), integer ? "I32" : "F32, F16 or BF16");
  }
  if (entry.shape != shape) {
    raise(ErrorCode::kInvalidArgument, "{}: tensor '{}' has shape [{}], expected [{}] ({})", file,
          name, fmt::join(entry.shape, ", "), fmt::join(shape, ", "), meaning);
  }
}

bool gguf_packed(const QuantConfig& q, const WeightShard& weight) {
  if (!weight.linear || weight.blocks.empty()) return false;
  return std::all_of(weight.blocks.begin(), weight.blocks.end(),
                     [&](const SourceBlock& b) { return q.packed_bits_of(b.tensor) > 0; });
}

void validate_gguf_shard(const Checkpoint& checkpoint, const QuantConfig& q,
                         const WeightShard& weight) {
  for (const SourceBlock& b : weight.blocks) {
    const std::string file = checkpoint.path_of(b.tensor).string();
    const TensorEntry& entry = checkpoint.tensor(b.tensor);
    if (entry.shape != std::vector<int64_t>{b.full_rows, b.full_cols}) {
      raise(ErrorCode::kInvalidArgument, "{}: tensor '{}' has shape [{}], expected [{}, {}] ({})",
            file, b.tensor, fmt::join(entry.shape, ", "), b.full_rows, b.full_cols,
            b.shape_meaning);
    }
    // The weight plan cuts only between blocks (RankShape); a cut elsewhere is a broken plan.
    const int64_t group = q.group_size;
    if (b.cols.begin % group != 0 || (b.cols.end % group != 0 && b.cols.end != b.full_cols)) {
      raise(ErrorCode::kInvalidArgument, "{}: '{}': shard cols [{}, {}) cut a {}-value block",
            file, b.tensor, b.cols.begin, b.cols.end, group);
    }
  }
}

kernels::QuantizedHostMatrix read_gguf_shard(const Checkpoint& checkpoint, const QuantConfig& q,
                                             const WeightShard& weight) {
  const SourceBlock& first = weight.blocks.front();
  const int64_t k0 = first.cols.begin;
  const int64_t cols = first.cols.size();
  const int64_t group = q.group_size;
  kernels::QuantizedHostMatrix m(planned_bits(weight, q), weight.rows, cols, group,
                                 (cols + group - 1) / group);
  int64_t row0 = 0;  // the block's first row in the shard
  for (const SourceBlock& b : weight.blocks) {
    checkpoint.read_packed(b.tensor, b.rows.begin, b.rows.end, k0, first.cols.end,
                           [&](int64_t row, const PackedBlock* blocks, int64_t count) {
                             const int64_t r = row0 + row;
                             for (int64_t g = 0; g < count; ++g) {
                               const PackedBlock& block = blocks[g];
                               m.set_scale_min(r, g, block.scale, block.min);
                               for (int64_t i = 0; i < kPackedBlockValues; ++i) {
                                 m.set_code(r, g * kPackedBlockValues + i, block.codes[i]);
                               }
                             }
                           });
    row0 += b.rows.size();
  }
  return m;
}

}  // namespace

int planned_bits(const WeightShard& weight, const QuantConfig& quant) {
  if (!weight.linear || !quant.enabled() || weight.blocks.empty()) return 0;
  if (quant.method != QuantMethod::kGguf) return quant.bits;
  if (!gguf_packed(quant, weight)) return 0;
  int bits = 0;
  for (const SourceBlock& b : weight.blocks) bits = std::max(bits, quant.packed_bits_of(b.tensor));
  return bits;
}

std::string quantized_prefix(const std::string& weight_tensor) {
  constexpr std::string_view kSuffix = ".weight";
  return weight_tensor.ends_with(kSuffix)
             ? weight_tensor.substr(0, weight_tensor.size() - kSuffix.size())
             : weight_tensor;
}

std::vector<std::string> quantized_tensor_names(const std::string& weight_tensor) {
  const Names n = names_of(weight_tensor);
  return {n.qweight, n.qzeros, n.scales, n.g_idx};
}

bool shard_is_quantized(const Checkpoint& checkpoint, const QuantConfig& quant,
                        const WeightShard& weight) {
  if (quant.method == QuantMethod::kGguf) return gguf_packed(quant, weight);
  if (!weight.linear || weight.blocks.empty()) return false;
  const auto quantized = [&](const SourceBlock& b) {
    return checkpoint.contains(names_of(b.tensor).qweight);
  };
  const bool first = quantized(weight.blocks.front());
  for (const SourceBlock& block : weight.blocks) {
    if (quantized(block) != first) {
      raise(ErrorCode::kInvalidArgument,
            "{}: '{}' and '{}' feed one fused weight but only one of them is quantized",
            checkpoint.dir().string(), weight.blocks.front().tensor, block.tensor);
    }
  }
  if (first && !quant.enabled()) {
    const std::string name = names_of(weight.blocks.front().tensor).qweight;
    raise(ErrorCode::kInvalidArgument,
          "{}: tensor '{}' is quantized but neither config.json's quantization_config nor "
          "quantize_config.json / quant_config.json says how",
          checkpoint.file_of(name).path().string(), name);
  }
  return first;
}

void validate_quantized_shard(const Checkpoint& checkpoint, const QuantConfig& q,
                              const WeightShard& weight) {
  if (q.method == QuantMethod::kGguf) {
    validate_gguf_shard(checkpoint, q, weight);
    return;
  }
  const int64_t pack = q.codes_per_word();
  const bool awq = q.method == QuantMethod::kAwq;
  for (const SourceBlock& b : weight.blocks) {
    const Names n = names_of(b.tensor);
    const int64_t out = b.full_rows;
    const int64_t in = b.full_cols;
    const std::string file = checkpoint.dir().string();
    if (out % pack != 0 || in % pack != 0) {
      raise(ErrorCode::kInvalidArgument, "{}: '{}' is [{}, {}]; {}-bit {} packs need both sides "
            "to be multiples of {}", file, b.tensor, out, in, q.bits, quant_method_name(q.method),
            pack);
    }
    const int64_t groups = ceil_div(in, full_group(q, in));
    const std::string shape = fmt::format("[out, in] = [{}, {}] from config.json, {} bits, {} "
                                          "groups", out, in, q.bits, groups);
    if (awq) {
      expect(checkpoint, n.qweight, true, {in, out / pack}, "[in, out / 8]: " + shape);
    } else {
      expect(checkpoint, n.qweight, true, {in / pack, out}, "[in / (32 / bits), out]: " + shape);
    }
    expect(checkpoint, n.qzeros, true, {groups, out / pack}, "[groups, out / (32 / bits)]: " + shape);
    expect(checkpoint, n.scales, false, {groups, out}, "[groups, out]: " + shape);
    if (!awq && checkpoint.contains(n.g_idx)) {
      expect(checkpoint, n.g_idx, true, {in}, "[in]: " + shape);
    } else if (q.desc_act) {
      raise(ErrorCode::kInvalidArgument, "{}: tensor '{}' not found: desc_act needs g_idx", file,
            n.g_idx);
    }
    // The weight plan cuts only where these hold (RankShape); a cut elsewhere is a broken plan.
    const bool rows_aligned = b.rows.begin % pack == 0 && (b.rows.end % pack == 0 || b.rows.end == out);
    const int64_t in_align = q.input_align();
    const bool cols_aligned =
        b.cols.begin % in_align == 0 && (b.cols.end % in_align == 0 || b.cols.end == in);
    if (!rows_aligned || !cols_aligned) {
      raise(ErrorCode::kInvalidArgument, "{}: '{}': shard rows [{}, {}) x cols [{}, {}) cut a "
            "pack of {} or a group of {}", file, b.tensor, b.rows.begin, b.rows.end, b.cols.begin,
            b.cols.end, pack, in_align);
    }
  }
}

kernels::QuantizedHostMatrix read_quantized_shard(const Checkpoint& checkpoint,
                                                  const QuantConfig& q, const WeightShard& weight) {
  if (q.method == QuantMethod::kGguf) return read_gguf_shard(checkpoint, q, weight);
  const bool awq = q.method == QuantMethod::kAwq;
  const int64_t pack = q.codes_per_word();
  const uint32_t mask = (1u << q.bits) - 1;
  const SourceBlock& first = weight.blocks.front();
  const int64_t in = first.full_cols;
  const int64_t k0 = first.cols.begin;
  const int64_t k1 = first.cols.end;
  const int64_t cols = k1 - k0;
  const int64_t group = full_group(q, in);

  // Each input column's group, from g_idx where the checkpoint has one (GPTQ writes it even
  // without act-order, then equal to k / group_size).
  std::vector<int32_t> group_of(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) group_of[static_cast<size_t>(c)] = static_cast<int32_t>((k0 + c) / group);
  bool have_g_idx = false;
  for (const SourceBlock& b : weight.blocks) {
    const std::string g_idx = names_of(b.tensor).g_idx;
    if (awq || !checkpoint.contains(g_idx)) continue;
    std::vector<int32_t> read(static_cast<size_t>(cols));
    checkpoint.read_i32(g_idx, k0, k1, 0, 1, read.data());
    const int64_t groups = ceil_div(in, group);
    for (int32_t g : read) {
      if (g < 0 || g >= groups) {
        raise(ErrorCode::kInvalidArgument, "{}: tensor '{}' holds group {} outside [0, {})",
              checkpoint.file_of(g_idx).path().string(), g_idx, g, groups);
      }
    }
    if (have_g_idx && read != group_of) {
      raise(ErrorCode::kUnimplemented, "{}: '{}' and '{}' feed one fused weight with different "
            "g_idx (act-order permutations); fused quantized weights need one",
            checkpoint.dir().string(), names_of(first.tensor).g_idx, g_idx);
    }
    group_of = std::move(read);
    have_g_idx = true;
  }
  // The groups this shard's columns use, renumbered from 0 in order.
  std::vector<int32_t> used = group_of;
  std::sort(used.begin(), used.end());
  used.erase(std::unique(used.begin(), used.end()), used.end());
  std::map<int32_t, int32_t> local;
  for (size_t i = 0; i < used.size(); ++i) local[used[i]] = static_cast<int32_t>(i);
  std::vector<int32_t> local_group(group_of.size());
  bool in_column_order = true;  // column c in local group c / group: no index needed
  for (size_t c = 0; c < group_of.size(); ++c) {
    local_group[c] = local[group_of[c]];
    in_column_order = in_column_order && local_group[c] == static_cast<int64_t>(c) / group;
  }
  kernels::QuantizedHostMatrix m(q.bits, weight.rows, cols, group,
                                 static_cast<int64_t>(used.size()));
  if (!in_column_order) m.set_group_index(std::move(local_group));

  const int32_t g_first = used.front();
  const int32_t g_end = used.back() + 1;
  int64_t row0 = 0;  // the block's first row in the shard
  for (const SourceBlock& b : weight.blocks) {
    const Names n = names_of(b.tensor);
    const int64_t n0 = b.rows.begin;
    const int64_t width = b.rows.size();
    const int64_t w0 = n0 / pack;
    const int64_t words = ceil_div(b.rows.end, pack) - w0;
    const auto slot = [&](int64_t out) { return awq ? kAwqSlot[out % 8] : out % pack; };
    const auto code_in = [&](int32_t word, int64_t s) {
      return (static_cast<uint32_t>(word) >> (q.bits * s)) & mask;
    };

    std::vector<float> scales(static_cast<size_t>((g_end - g_first) * width));
    checkpoint.read_f32(n.scales, g_first, g_end, n0, b.rows.end, scales.data());
    std::vector<int32_t> zeros(static_cast<size_t>((g_end - g_first) * words));
    checkpoint.read_i32(n.qzeros, g_first, g_end, w0, w0 + words, zeros.data());
    for (size_t li = 0; li < used.size(); ++li) {
      const int64_t g = used[li] - g_first;
      for (int64_t o = 0; o < width; ++o) {
        const int64_t out = n0 + o;
        const uint32_t stored = code_in(zeros[static_cast<size_t>(g * words + out / pack - w0)], slot(out));
        m.set_scale_zero(row0 + o, static_cast<int64_t>(li), scales[static_cast<size_t>(g * width + o)],
                         static_cast<float>(stored) + static_cast<float>(q.zero_offset));
      }
    }

    if (awq) {  // [in, out / 8]: this block's words of each of its input rows
      std::vector<int32_t> packed(static_cast<size_t>(cols * words));
      checkpoint.read_i32(n.qweight, k0, k1, w0, w0 + words, packed.data());
      for (int64_t c = 0; c < cols; ++c) {
        for (int64_t o = 0; o < width; ++o) {
          const int64_t out = n0 + o;
          m.set_code(row0 + o, c, code_in(packed[static_cast<size_t>(c * words + out / pack - w0)], slot(out)));
        }
      }
    } else {  // [in / pack, out]: the words holding this shard's inputs, this block's outputs
      const int64_t r0 = k0 / pack;
      const int64_t word_rows = ceil_div(k1, pack) - r0;
      std::vector<int32_t> packed(static_cast<size_t>(word_rows * width));
      checkpoint.read_i32(n.qweight, r0, r0 + word_rows, n0, b.rows.end, packed.data());
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t k = k0 + c;
        const int32_t* row = packed.data() + (k / pack - r0) * width;
        for (int64_t o = 0; o < width; ++o) m.set_code(row0 + o, c, code_in(row[o], k % pack));
      }
    }
    row0 += width;
  }
  return m;
}

}  // namespace tpserve::runtime
