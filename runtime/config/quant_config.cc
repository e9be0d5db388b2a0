#include "runtime/config/quant_config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/field_table.h"
#include "runtime/config/model_config.h"

namespace tpserve::runtime {

using nlohmann::json;

namespace {

using enum FieldUse;

// The settings of AutoGPTQ's BaseQuantizeConfig, transformers / optimum's GPTQConfig, GPTQModel's
// QuantizeConfig and AutoAWQ's AwqConfig / quant_config.json, as they appear in checkpoints.
constexpr FieldRule kQuantFields[] = {
    {"quant_method", kSupported, "gptq or awq"},
    {"bits", kSupported, "4 or 8"},
    {"w_bit", kSupported, "AutoAWQ's name for bits"},
    {"group_size", kSupported, "input columns per scale; -1: one group"},
    {"q_group_size", kSupported, "AutoAWQ's name for group_size"},
    {"desc_act", kSupported, "act-order: groups follow g_idx"},
    {"sym", kSupported, "the stored zero points are used as written"},
    {"zero_point", kRefused, "AWQ without zero points is not supported", "true"},
    {"checkpoint_format", kSupported, "gptq (zero - 1 stored) or gptq_v2 (zero stored)"},
    {"format", kSupported, "GPTQModel's name for checkpoint_format"},
    {"version", kSupported, "AWQ packing: gemm only"},
    {"is_marlin_format", kRefused, "Marlin-repacked GPTQ weights are not supported"},
    {"lm_head", kRefused, "a quantized lm_head is not supported"},
    {"dynamic", kRefused, "per-module GPTQ overrides are not supported"},
    // How the quantizer ran or how a Python loader would run it: the stored tensors say it all.
    {"true_sequential", kHarmless, "quantization order"},
    {"static_groups", kHarmless, "decides g_idx, which is read as stored"},
    {"damp_percent", kHarmless, "quantization damping"},
    {"damp_auto_increment", kHarmless, "quantization damping"},
    {"model_name_or_path", kHarmless, "bookkeeping"},
    {"model_file_base_name", kHarmless, "bookkeeping"},
    {"quantizer", kHarmless, "bookkeeping"},
    {"meta", kHarmless, "bookkeeping"},
    {"pack_dtype", kHarmless, "int32 is what both formats store; the tensors' dtype is checked"},
    {"tokenizer", kHarmless, "calibration input"},
    {"dataset", kHarmless, "calibration input"},
    {"model_seqlen", kHarmless, "calibration input"},
    {"batch_size", kHarmless, "calibration input"},
    {"pad_token_id", kHarmless, "calibration input"},
    {"use_cuda_fp16", kHarmless, "Python kernel choice"},
    {"use_exllama", kHarmless, "Python kernel choice"},
    {"exllama_config", kHarmless, "Python kernel choice"},
    {"max_input_length", kHarmless, "Python kernel choice"},
    {"backend", kHarmless, "Python kernel choice"},
    {"do_fuse", kHarmless, "Python kernel choice"},
    {"fuse_max_seq_len", kHarmless, "Python kernel choice"},
    {"cache_block_outputs", kHarmless, "calibration memory"},
    {"block_name_to_quantize", kHarmless, "which layers: read per tensor (qweight or weight)"},
    {"module_name_preceding_first_block", kHarmless, "calibration"},
    {"modules_in_block_to_quantize", kHarmless, "which layers: read per tensor (qweight or weight)"},
    {"modules_to_not_convert", kHarmless, "which layers: read per tensor (qweight or weight)"},
};

constexpr const char* kQuantizationFiles[] = {"quantize_config.json", "quant_config.json"};

// The object's fields, each error naming the file and the field as the user wrote it
// ("quantization_config.bits" inside config.json).
class Fields {
 public:
  Fields(const json& object, const std::filesystem::path& file, const char* prefix)
      : object_(object), file_(file), prefix_(prefix) {}

  bool has(const char* field) const {
    return object_.contains(field) && !object_[field].is_null();
  }
  [[noreturn]] void fail(ErrorCode code, const char* field, const std::string& problem) const {
    raise(code, "{}: field '{}{}': {}", file_.string(), prefix_, field, problem);
  }
  [[noreturn]] void refuse(const char* field, const std::string& problem) const {
    fail(ErrorCode::kUnimplemented, field, problem);
  }
  int64_t integer(const char* field) const {
    if (!has(field) || !object_[field].is_number_integer() ||
        std::abs(object_[field].get<double>()) > (1 << 30)) {
      fail(ErrorCode::kInvalidArgument, field,
           "expected an integer, got " + (has(field) ? object_[field].dump() : "nothing"));
    }
    return object_[field].get<int64_t>();
  }
  std::string text_or(const char* field, const std::string& fallback) const {
    if (!has(field)) return fallback;
    if (!object_[field].is_string()) {
      fail(ErrorCode::kInvalidArgument, field, "expected a string, got " + object_[field].dump());
    }
    return object_[field].get<std::string>();
  }
  bool flag_or(const char* field, bool fallback) const {
    if (!has(field)) return fallback;
    if (!object_[field].is_boolean()) {
      fail(ErrorCode::kInvalidArgument, field, "expected true or false, got " + object_[field].dump());
    }
    return object_[field].get<bool>();
  }

 private:
  const json& object_;
  const std::filesystem::path& file_;
  const char* prefix_;
};

QuantConfig parse(const json& object, const std::filesystem::path& file, const char* prefix) {
  if (!object.is_object()) {
    raise(ErrorCode::kInvalidArgument, "{}: {}expected a JSON object", file.string(), prefix);
  }
  QuantConfig q;
  q.file = file;
  q.unknown_fields = check_fields(object, file, {kQuantFields}, prefix);
  const Fields fields(object, file, prefix);
  // AutoGPTQ's quantize_config.json predates quant_method: a file of that name is GPTQ.
  const std::string method = fields.text_or(
      "quant_method", file.filename() == "quant_config.json" ? "awq" : "gptq");
  if (method == "gptq") {
    q.method = QuantMethod::kGptq;
  } else if (method == "awq") {
    q.method = QuantMethod::kAwq;
  } else {
    fields.refuse("quant_method", "'" + method + "' is not supported (gptq and awq are)");
  }
  const bool awq = q.method == QuantMethod::kAwq;
  const char* bits_field = fields.has("w_bit") ? "w_bit" : "bits";
  q.bits = static_cast<int>(fields.integer(bits_field));
  if (q.bits != 4 && (awq || q.bits != 8)) {
    fields.refuse(bits_field, std::to_string(q.bits) + " is not supported (" +
                                  (awq ? "4 is" : "4 and 8 are") + ")");
  }
  const char* group_field = fields.has("q_group_size") ? "q_group_size" : "group_size";
  const int64_t group = fields.integer(group_field);
  if (group != -1 && (group <= 0 || group % 2 != 0)) {
    fields.fail(ErrorCode::kInvalidArgument, group_field,
                std::to_string(group) + " is not -1 or a positive even size");
  }
  q.group_size = group == -1 ? 0 : group;
  q.desc_act = fields.flag_or("desc_act", false);
  q.sym = fields.flag_or("sym", true);
  if (awq) {
    const std::string version = fields.text_or("version", "gemm");
    if (version != "gemm" && version != "GEMM") {
      fields.refuse("version", "'" + version + "' is not supported (AWQ's GEMM layout is)");
    }
    q.zero_offset = 0;
    return q;
  }
  const char* format_field = fields.has("checkpoint_format") ? "checkpoint_format" : "format";
  const std::string format = fields.text_or(format_field, "gptq");
  if (format == "gptq") {
    q.zero_offset = 1;
  } else if (format == "gptq_v2") {
    q.zero_offset = 0;
  } else {
    fields.refuse(format_field, "'" + format + "' is not supported (gptq and gptq_v2 are)");
  }
  return q;
}

}  // namespace

int64_t QuantConfig::input_align() const {
  return group_size > 0 && !desc_act ? group_size : codes_per_word();
}

const char* quant_method_name(QuantMethod method) {
  switch (method) {
    case QuantMethod::kGptq: return "gptq";
    case QuantMethod::kAwq: return "awq";
    case QuantMethod::kGguf: return "gguf";
    case QuantMethod::kNone: break;
  }
  return "none";
}

QuantConfig quant_preset(const std::string& spec, int64_t group_size) {
  QuantConfig q;
  if (spec == "none") return q;
  if (spec == "gptq-int4" || spec == "gptq-int8") {
    q.method = QuantMethod::kGptq;
    q.bits = spec == "gptq-int4" ? 4 : 8;
    q.zero_offset = 1;  // AutoGPTQ's format, as the released GPTQ checkpoints
  } else if (spec == "awq-int4") {
    q.method = QuantMethod::kAwq;
    q.bits = 4;
  } else {
    raise(ErrorCode::kInvalidArgument, "--quant: '{}' is not none, gptq-int4, gptq-int8 or awq-int4",
          spec);
  }
  if (group_size != -1 && (group_size <= 0 || group_size % 2 != 0)) {
    raise(ErrorCode::kInvalidArgument, "--group-size: {} is not -1 or a positive even size",
          group_size);
  }
  q.group_size = group_size == -1 ? 0 : group_size;
  q.file = "--quant " + spec;  // what error messages name as the source of the settings
  return q;
}

QuantConfig read_quant_config(const json& config_json, const std::filesystem::path& dir) {
  if (config_json.is_object() && config_json.contains("quantization_config") &&
      !config_json["quantization_config"].is_null()) {
    return parse(config_json["quantization_config"], dir / "config.json", "quantization_config.");
  }
  for (const char* name : kQuantizationFiles) {
    const std::filesystem::path file = dir / name;
    if (!std::filesystem::exists(file)) continue;
    QuantConfig q = parse(read_config_json(file), file, "");
    warn_unknown_fields(file, q.unknown_fields);
    q.unknown_fields.clear();
    return q;
  }
  return {};
}

}  // namespace tpserve::runtime
