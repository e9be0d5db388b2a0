#include "launch/model_source.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdlib>

#include "common/error.h"
#include "runtime/model/checkpoint_source.h"

namespace tpserve::launch {

void add_model_source_options(CLI::App& app, ModelSource& source) {
  app.add_option("--model", source.model_dir, "Checkpoint folder (its config.json) or GGUF file");
  app.add_option("--preset", source.preset,
                 "Shape preset: a file NAME.json in configs/presets (see TPSERVE_CONFIGS)");
  app.add_option("--quant", source.quant,
                 "A preset's linear weights: none, gptq-int4, gptq-int8 or awq-int4 (packed codes "
                 "with a scale and a zero per group)")
      ->capture_default_str();
  app.add_option("--group-size", source.group_size,
                 "--quant: input columns per group (-1: one group per row)")
      ->capture_default_str();
}

std::filesystem::path presets_dir() {
  if (const char* env = std::getenv("TPSERVE_CONFIGS"); env != nullptr && *env != '\0') {
    const std::filesystem::path root(env);
    return std::filesystem::is_directory(root / "presets") ? root / "presets" : root;
  }
  return std::filesystem::path(TPSERVE_CONFIGS_DIR) / "presets";
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(presets_dir(), error)) {
    if (entry.path().extension() == ".json") names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

runtime::PlanModel read_model_source(const ModelSource& source) {
  if (source.model_dir.empty() == source.preset.empty()) {
    raise(ErrorCode::kInvalidArgument, "give exactly one of --model DIR and --preset NAME");
  }
  runtime::QuantConfig quant = runtime::quant_preset(source.quant, source.group_size);
  if (!source.model_dir.empty()) {
    if (quant.enabled()) {
      raise(ErrorCode::kInvalidArgument, "--quant {} applies to --preset only: a checkpoint's "
            "quantization is its own (config.json's quantization_config)", source.quant);
    }
    const std::filesystem::path dir(source.model_dir);
    if (runtime::is_gguf_file(dir)) {
      return {dir.filename().string(), runtime::read_model_config(dir)};
    }
    return runtime::read_plan_model(dir / "config.json",
                                    std::filesystem::absolute(dir).lexically_normal().filename().string());
  }
  const std::filesystem::path file = presets_dir() / (source.preset + ".json");
  if (!std::filesystem::is_regular_file(file)) {
    raise(ErrorCode::kNotFound, "{}: unknown preset '{}' (in {}); available: {}",
          source.preset_flag, source.preset, presets_dir().string(),
          fmt::join(preset_names(), ", "));
  }
  runtime::PlanModel model = runtime::read_plan_model(file, source.preset);
  if (quant.enabled()) {
    model.config.quant = std::move(quant);
    model.name += " " + source.quant;
    if (source.group_size != 128) model.name += fmt::format(" g{}", source.group_size);
  }
  return model;
}

std::vector<int> parse_int_list(const std::string& text, const char* flag) {
  std::vector<int> values;
  size_t begin = 0;
  while (begin <= text.size()) {
    const size_t end = std::min(text.find(',', begin), text.size());
    const std::string item = text.substr(begin, end - begin);
    size_t used = 0;
    int value = 0;
    try {
      value = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || value <= 0) {
      raise(ErrorCode::kInvalidArgument, "{}: '{}' is not a list of positive integers like 1,2,4",
            flag, text);
    }
    values.push_back(value);
    begin = end + 1;
  }
  return values;
}

runtime::KvCacheDtype parse_kv_cache_dtype(const std::string& text) {
  if (text == "auto") return runtime::KvCacheDtype::kAuto;
  if (text == "int8") return runtime::KvCacheDtype::kInt8;
  if (text == "fp8") {
    raise(ErrorCode::kUnimplemented,
          "--kv-cache-dtype fp8: needs a CUDA GPU of sm_89+, not implemented yet");
  }
  raise(ErrorCode::kInvalidArgument, "--kv-cache-dtype {}: expected auto or int8", text);
}

DType parse_compute_dtype(const std::string& text) {
  if (text == "bf16" || text == "bfloat16") return DType::kBF16;
  if (text == "fp16" || text == "f16" || text == "float16") return DType::kF16;
  if (text == "f32" || text == "fp32" || text == "float32") return DType::kF32;
  raise(ErrorCode::kInvalidArgument, "--dtype: '{}' is not bf16, fp16 or f32", text);
}

}  // namespace tpserve::launch
