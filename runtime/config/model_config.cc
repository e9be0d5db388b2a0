#include "runtime/config/model_config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"

namespace tpserve::runtime {

using nlohmann::json;

ConfigReader::ConfigReader(const json& document, std::filesystem::path file)
    : json_(document), file_(std::move(file)) {}

void ConfigReader::fail(const char* field, const std::string& problem) const {
  raise(ErrorCode::kInvalidArgument, "{}: field '{}': {}", file_.string(), field, problem);
}

bool ConfigReader::has(const char* field) const {
  return json_.contains(field) && !json_[field].is_null();
}

int64_t ConfigReader::positive_int(const char* field) const {
  if (!has(field)) fail(field, "missing");
  const json& value = json_[field];
  if (!value.is_number_integer()) fail(field, "expected an integer, got " + value.dump());
  const int64_t number = value.get<int64_t>();
  if (number <= 0) fail(field, "must be positive, got " + std::to_string(number));
  return number;
}

int64_t ConfigReader::positive_int_or(const char* field, int64_t fallback) const {
  return has(field) ? positive_int(field) : fallback;
}

float ConfigReader::positive_float_or(const char* field, float fallback) const {
  if (!has(field)) return fallback;
  const json& value = json_[field];
  if (!value.is_number()) fail(field, "expected a number, got " + value.dump());
  const double number = value.get<double>();
  if (!(number > 0.0)) fail(field, "must be positive, got " + value.dump());
  return static_cast<float>(number);
}

bool ConfigReader::bool_or(const char* field, bool fallback) const {
  if (!has(field)) return fallback;
  if (!json_[field].is_boolean()) fail(field, "expected true or false, got " + json_[field].dump());
  return json_[field].get<bool>();
}

std::string ConfigReader::string_or(const char* field, const std::string& fallback) const {
  if (!has(field)) return fallback;
  if (!json_[field].is_string()) fail(field, "expected a string, got " + json_[field].dump());
  return json_[field].get<std::string>();
}

std::vector<int32_t> ConfigReader::token_ids_or_empty(const char* field) const {
  std::vector<int32_t> ids;
  if (!has(field)) return ids;
  const json& value = json_[field];
  const auto add = [&](const json& item) {
    if (!item.is_number_integer() || item.get<int64_t>() < 0) {
      fail(field, "expected a token id or a list of them, got " + value.dump());
    }
    ids.push_back(static_cast<int32_t>(item.get<int64_t>()));
  };
  if (value.is_array()) {
    for (const json& item : value) add(item);
  } else {
    add(value);
  }
  return ids;
}

namespace {

}  // namespace

json read_config_json(const std::filesystem::path& file) {
  std::ifstream stream(file);
  if (!stream) raise(ErrorCode::kNotFound, "{}: cannot open (missing or unreadable)", file.string());
  try {
    return json::parse(stream);
  } catch (const json::parse_error& e) {
    raise(ErrorCode::kInvalidArgument, "{}: malformed JSON: {}", file.string(), e.what());
  }
}

namespace {

// YaRN's cos/sin multiplier for scale s (transformers' get_mscale): 0.1 * mscale * ln(s) + 1.
double yarn_mscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

// "rope_type": "yarn", as transformers' _compute_yarn_parameters reads it: factor (required);
// original_max_position_embeddings, the context the frequencies were trained for (default
// max_position_embeddings); beta_fast / beta_slow (32 / 1), truncate (true); attention_factor, else
// get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim) when both are given (DeepSeek),
// else get_mscale(factor) = 0.1 ln(factor) + 1. tpserve serves up to original * factor positions
// (Qwen2.5 documents factor 4 over 32768 for 128k).
void parse_yarn(const ConfigReader& scaling, const char* field, ModelConfig& config) {
  RopeConfig& rope = config.rope;
  rope.scaling = RopeScaling::kYarn;
  const std::string factor_field = std::string(field) + ".factor";
  if (!scaling.has("factor")) scaling.fail(factor_field.c_str(), "missing (yarn needs it)");
  rope.factor = scaling.positive_float_or("factor", 1.0f);
  if (rope.factor < 1.0f) {
    scaling.fail(factor_field.c_str(), fmt::format("yarn needs at least 1, got {}", rope.factor));
  }
  rope.original_max_position_embeddings =
      scaling.positive_int_or("original_max_position_embeddings", config.max_position_embeddings);
  rope.beta_fast = scaling.positive_float_or("beta_fast", 32.0f);
  rope.beta_slow = scaling.positive_float_or("beta_slow", 1.0f);
  rope.truncate = scaling.bool_or("truncate", true);
  const double factor = rope.factor;
  if (scaling.has("attention_factor")) {
    rope.attention_factor = scaling.positive_float_or("attention_factor", 1.0f);
  } else if (scaling.has("mscale") && scaling.has("mscale_all_dim")) {
    rope.attention_factor = static_cast<float>(
        yarn_mscale(factor, scaling.positive_float_or("mscale", 1.0f)) /
        yarn_mscale(factor, scaling.positive_float_or("mscale_all_dim", 1.0f)));
  } else {
    rope.attention_factor = static_cast<float>(yarn_mscale(factor, 1.0));
  }
  config.max_position_embeddings = std::max<int64_t>(
      config.max_position_embeddings,
      static_cast<int64_t>(static_cast<double>(rope.original_max_position_embeddings) * factor));
}

// Rope settings live either in "rope_theta" + "rope_scaling" (checkpoints on the hub) or in
// "rope_parameters" (configs written by transformers >= 5).
void parse_rope(const ConfigReader& reader, ModelConfig& config) {
  const json& root = reader.document();
  const bool new_style = reader.has("rope_parameters");
  const json scaling = new_style ? root["rope_parameters"]
                                 : (reader.has("rope_scaling") ? root["rope_scaling"] : json::object());
  const char* field = new_style ? "rope_parameters" : "rope_scaling";
  if (!scaling.is_object()) reader.fail(field, "expected an object, got " + scaling.dump());
  const ConfigReader scaling_reader(scaling, reader.file());
  config.rope.theta = new_style ? scaling_reader.positive_float_or("rope_theta", 10000.0f)
                                : reader.positive_float_or("rope_theta", 10000.0f);
  const bool partial_inside = scaling_reader.has("partial_rotary_factor");
  set_rotary_dim(reader, config, "partial_rotary_factor",
                 (partial_inside ? scaling_reader : reader).positive_float_or("partial_rotary_factor", 1.0f));
  std::string type = scaling_reader.string_or("rope_type", scaling_reader.string_or("type", "default"));
  if (type == "default") {
    config.rope.scaling = RopeScaling::kNone;
  } else if (type == "linear") {
    config.rope.scaling = RopeScaling::kLinear;
    config.rope.factor = scaling_reader.positive_float_or("factor", 1.0f);
  } else if (type == "dynamic") {
    // Identity up to max_position_embeddings (the trained length); tpserve serves up to
    // max_position_embeddings * factor, the length the factor was chosen for.
    config.rope.scaling = RopeScaling::kDynamic;
    config.rope.factor = scaling_reader.positive_float_or("factor", 1.0f);
    config.rope.trained_context = config.max_position_embeddings;
    if (config.rope.rotary_dim <= 2) {
      reader.fail(field, fmt::format("dynamic scaling needs more than 2 rotary dims, got {}",
                                     config.rope.rotary_dim));
    }
    config.max_position_embeddings = std::max<int64_t>(
        config.max_position_embeddings,
        static_cast<int64_t>(static_cast<double>(config.max_position_embeddings) * config.rope.factor));
  } else if (type == "llama3") {
    config.rope.scaling = RopeScaling::kLlama3;
    config.rope.factor = scaling_reader.positive_float_or("factor", 8.0f);
    config.rope.low_freq_factor = scaling_reader.positive_float_or("low_freq_factor", 1.0f);
    config.rope.high_freq_factor = scaling_reader.positive_float_or("high_freq_factor", 4.0f);
    config.rope.original_max_position_embeddings =
        scaling_reader.positive_int_or("original_max_position_embeddings", 8192);
  } else if (type == "yarn") {
    parse_yarn(scaling_reader, field, config);
  } else {
    raise(ErrorCode::kUnimplemented, "{}: field '{}.rope_type': '{}' is not supported (default, "
          "linear, dynamic, llama3, yarn are)", reader.file().string(), field, type);
  }
}

DType parse_dtype(const ConfigReader& reader) {
  const char* field = reader.has("torch_dtype") ? "torch_dtype" : "dtype";
  const std::string name = reader.string_or(field, "float32");
  if (name == "float32") return DType::kF32;
  if (name == "float16") return DType::kF16;
  if (name == "bfloat16") return DType::kBF16;
  reader.fail(field, "'" + name + "' is not float32, float16 or bfloat16");
}

}  // namespace

void set_rotary_dim(const ConfigReader& reader, ModelConfig& config, const char* field,
                    float fraction) {
  config.rope.rotary_dim = static_cast<int>(static_cast<float>(config.head_dim) * fraction);
  if (config.rope.rotary_dim <= 0 || config.rope.rotary_dim % 2 != 0 ||
      config.rope.rotary_dim > config.head_dim) {
    reader.fail(field, fmt::format("gives {} rotary dims for head_dim {}", config.rope.rotary_dim,
                                   config.head_dim));
  }
}

void read_common_fields(const ConfigReader& reader, ModelConfig& config) {
  config.model_type = reader.string_or("model_type", "");
  config.tie_word_embeddings = reader.bool_or("tie_word_embeddings", false);
  config.torch_dtype = parse_dtype(reader);
  config.eos_token_ids = reader.token_ids_or_empty("eos_token_id");
  const std::vector<int32_t> bos = reader.token_ids_or_empty("bos_token_id");
  config.bos_token_id = bos.empty() ? -1 : bos.front();
  const std::string activation = reader.string_or("hidden_act", "silu");
  if (activation != "silu") reader.fail("hidden_act", "'" + activation + "' is not supported (silu is)");
}

void read_llama_style_fields(const ConfigReader& reader, ModelConfig& config) {
  config.hidden_size = reader.positive_int("hidden_size");
  config.intermediate_size = reader.positive_int("intermediate_size");
  config.vocab_size = reader.positive_int("vocab_size");
  config.num_layers = static_cast<int>(reader.positive_int("num_hidden_layers"));
  config.num_heads = static_cast<int>(reader.positive_int("num_attention_heads"));
  config.num_kv_heads = static_cast<int>(reader.positive_int_or("num_key_value_heads", config.num_heads));
  config.head_dim = static_cast<int>(reader.positive_int_or("head_dim", config.hidden_size / config.num_heads));
  if (config.num_heads % config.num_kv_heads != 0) {
    reader.fail("num_key_value_heads", fmt::format("{} does not divide num_attention_heads ({})",
                                                   config.num_kv_heads, config.num_heads));
  }
  config.rms_norm_eps = reader.positive_float_or("rms_norm_eps", 1e-6f);
  config.max_position_embeddings = reader.positive_int_or("max_position_embeddings", 2048);
  parse_rope(reader, config);
}

}  // namespace tpserve::runtime
