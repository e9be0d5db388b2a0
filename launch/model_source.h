// Where `tpserve plan` and `tpserve bench` get a model's shape: a checkpoint folder (--model DIR,
// its config.json) or a named preset (--preset NAME, configs/presets/NAME.json in the family's own
// config.json format). Presets are looked up in $TPSERVE_CONFIGS/presets (or $TPSERVE_CONFIGS
// itself) when set, else in the source tree's configs/presets (TPSERVE_CONFIGS_DIR).
#pragma once

#include <CLI/CLI.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "runtime/planning/memory_plan.h"

namespace tpserve::launch {

struct ModelSource {
  std::string model_dir;
  std::string preset;
  std::string quant = "none";  // a preset's linear weights: runtime::quant_preset
  int64_t group_size = 128;
  std::string preset_flag = "--preset";  // how errors name the preset's flag
};

// Adds --model and --preset (exactly one is required at run time), and --quant / --group-size,
// which quantize a preset's linear weights (a checkpoint's quantization is its own).
void add_model_source_options(CLI::App& app, ModelSource& source);

// Reads the shape; an unknown preset raises kNotFound listing the available ones, --quant with
// --model kInvalidArgument.
runtime::PlanModel read_model_source(const ModelSource& source);

std::filesystem::path presets_dir();
std::vector<std::string> preset_names();

// "1,2,4" -> {1, 2, 4}; raises kInvalidArgument naming the flag on anything else.
std::vector<int> parse_int_list(const std::string& text, const char* flag);

// "bf16" / "fp16" / "f32" (and bfloat16, float16, float32, f16, fp32).
DType parse_compute_dtype(const std::string& text);

// --kv-cache-dtype: "auto" (the compute dtype) or "int8". "fp8" is refused (kUnimplemented: it
// needs a CUDA GPU of sm_89+ and is not implemented yet), anything else too (kInvalidArgument),
// both naming the flag.
runtime::KvCacheDtype parse_kv_cache_dtype(const std::string& text);

}  // namespace tpserve::launch
