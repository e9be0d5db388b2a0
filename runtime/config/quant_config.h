// The quantization a checkpoint ships with: GPTQ (AutoGPTQ / optimum / GPTQModel) or AWQ (AutoAWQ
// "GEMM"), read from config.json's quantization_config or, where that is absent, from the file the
// quantizer wrote beside the weights (AutoGPTQ's quantize_config.json, AutoAWQ's quant_config.json).
// Only the settings; the tensors are read by runtime/model/quantized_load.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace tpserve::runtime {

// kGguf: a GGUF file whose simple block types (Q8_0, Q4_0, Q4_1) stay packed; its tensors may mix
// types, so `packed_bits` names each packed one (runtime/model/checkpoint_source.cc fills it).
enum class QuantMethod { kNone, kGptq, kAwq, kGguf };

struct QuantConfig {
  QuantMethod method = QuantMethod::kNone;
  int bits = 0;            // 4 or 8 (AWQ: 4)
  int64_t group_size = 0;  // input columns per group; 0 = one group over all of them ("-1")
  bool desc_act = false;   // GPTQ act-order: groups follow g_idx, not column order
  bool sym = true;
  // Added to every stored zero point. AutoGPTQ's QuantLinear.pack stores zero - 1 and its
  // dequantization adds 1 back (qlinear_cuda.py); GPTQModel's checkpoint_format "gptq_v2" stores
  // the zero itself (vLLM: zero_offset = use_v2_format ? 0 : 1); AutoAWQ stores it as is.
  int zero_offset = 0;
  // kGguf: checkpoint tensor name -> bits of its codes (4 or 8), for every tensor kept packed.
  std::map<std::string, int> packed_bits;
  std::filesystem::path file;  // where the settings came from, for errors
  // Fields no table knows, as "quantization_config.<name>" when read from config.json (reported
  // with config.json's other unknown fields); a separate file reports its own.
  std::vector<std::string> unknown_fields;

  bool enabled() const { return method != QuantMethod::kNone; }
  int codes_per_word() const { return 32 / bits; }  // both formats pack codes into int32 words
  // Input columns a shard boundary must be a multiple of: the group (so no rank holds part of a
  // group's columns) where groups run in column order, else one packed int32 word of GPTQ's qweight.
  int64_t input_align() const;
  // Output rows a column-parallel boundary must be a multiple of: qzeros (both formats) and AWQ's
  // qweight pack codes_per_word outputs into each int32.
  // GGUF blocks run along the input only: any row boundary works.
  int64_t output_align() const { return method == QuantMethod::kGguf ? 1 : codes_per_word(); }
  // kGguf: the bits of tensor `name` when it is kept packed, else 0.
  int packed_bits_of(const std::string& name) const {
    auto it = packed_bits.find(name);
    return it == packed_bits.end() ? 0 : it->second;
  }
};

const char* quant_method_name(QuantMethod method);

// The quantization of the model in `dir`: config.json's quantization_config (`config_json`, the
// parsed file) when present, else quantize_config.json / quant_config.json, else none. Refuses
// (kUnimplemented, naming the file and field) what tpserve does not read: other methods, bits
// other than 4/8, AWQ versions other than GEMM, Marlin-packed or per-module ("dynamic") GPTQ, a
// quantized lm_head.
QuantConfig read_quant_config(const nlohmann::json& config_json, const std::filesystem::path& dir);

// The quantization `plan`, `bench` and `scale` give a float preset (--quant, --group-size): "none",
// "gptq-int4", "gptq-int8" or "awq-int4", groups of `group_size` input columns in column order
// (-1: one group per row). Raises kInvalidArgument naming the flag on anything else.
QuantConfig quant_preset(const std::string& spec, int64_t group_size);

}  // namespace tpserve::runtime
