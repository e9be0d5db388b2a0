#include "runtime/config/model_config.h"

#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "runtime/config/config_fields.h"

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
  // A uint64 above INT64_MAX reads back negative, so judge it by its text.
  if (value.is_number_unsigned() && value.get<uint64_t>() > static_cast<uint64_t>(INT32_MAX)) {
    fail(field, fmt::format("{} is out of range (at most {})", value.dump(), INT32_MAX));
  }
  const int64_t number = value.get<int64_t>();
  if (number <= 0) fail(field, "must be positive, got " + std::to_string(number));
  if (number > INT32_MAX) fail(field, fmt::format("{} is out of range (at most {})", number, INT32_MAX));
  return number;
}

int64_t ConfigReader::non_negative_int_or(const char* field, int64_t fallback) const {
  if (!has(field)) return fallback;
  const json& value = json_[field];
  if (value.is_number_integer() && !value.is_number_unsigned() && value.get<int64_t>() < 0) {
    fail(field, "expected a non-negative integer, got " + value.dump());
  }
  if (value.is_number_unsigned() && value.get<uint64_t>() == 0) return 0;
  return positive_int(field);
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
  if (!(number <= FLT_MAX)) fail(field, "must be a finite float32, got " + value.dump());
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
    if (!item.is_number_integer() || item.get<int64_t>() < 0 || item.get<int64_t>() > INT32_MAX) {
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

json read_config_json(const std::filesystem::path& file) {
  std::ifstream stream(file);
  if (!stream) raise(ErrorCode::kNotFound, "{}: cannot open (missing or unreadable)", file.string());
  try {
    return json::parse(stream);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number like 1e999
    raise(ErrorCode::kInvalidArgument, "{}: malformed JSON: {}", file.string(), e.what());
  }
}

namespace {

// YaRN's cos/sin multiplier for scale s (transformers' get_mscale): 0.1 * mscale * ln(s) + 1.
double yarn_mscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

// The context a scaled RoPE serves: trained * factor, refused (naming the factor) past INT32_MAX
// positions, before the float product becomes an integer.
int64_t scaled_context(const ConfigReader& reader, const std::string& factor_field, int64_t trained,
                       double factor) {
  const double context = static_cast<double>(trained) * factor;
  if (!(context <= static_cast<double>(INT32_MAX))) {
    reader.fail(factor_field.c_str(), fmt::format("{} x {} positions is out of range (at most {})",
                                                  factor, trained, INT32_MAX));
  }
  return static_cast<int64_t>(context);
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
      scaled_context(scaling, factor_field, rope.original_max_position_embeddings, factor));
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
  for (std::string& unknown : check_fields(scaling, reader.file(), {kRopeScalingFields},
                                           std::string(field) + ".")) {
    config.unknown_fields.push_back(std::move(unknown));
  }
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
        scaled_context(scaling_reader, std::string(field) + ".factor", config.max_position_embeddings,
                       config.rope.factor));
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

int read_head_dim(const ConfigReader& reader, const ModelConfig& config, const char* field,
                  const ShapeFieldNames& names) {
  if (reader.has(field)) return static_cast<int>(reader.positive_int(field));
  if (config.hidden_size % config.num_heads != 0) {
    // transformers computes hidden_size // num_heads; a remainder leaves q/k/v narrower than the
    // hidden state, which no released checkpoint of these families does without a head_dim.
    reader.fail(names.num_heads, fmt::format("{} does not divide {} ({}) and no {} is given",
                                             config.num_heads, names.hidden_size, config.hidden_size,
                                             field));
  }
  return static_cast<int>(config.hidden_size / config.num_heads);
}

namespace {

// Bounds far above any released checkpoint (the largest single tensors, 128k-vocab embeddings of
// 16k-wide models, hold ~2^31 elements) that keep every byte count, a count times a dtype size
// summed over the model, well inside int64.
constexpr int64_t kMaxTensorElements = int64_t{1} << 40;
constexpr long double kMaxParameters = static_cast<long double>(int64_t{1} << 48);

void check_matrix(const ConfigReader& reader, const char* field, const char* what, int64_t rows,
                  int64_t cols) {
  // Each factor is at most INT32_MAX (ConfigReader), so the product fits int64.
  if (rows * cols > kMaxTensorElements) {
    reader.fail(field, fmt::format("{} [{} x {}] would hold {} elements, more than 2^40", what, rows,
                                   cols, rows * cols));
  }
}

}  // namespace

void check_shape_sizes(const ConfigReader& reader, const ModelConfig& config,
                       const ShapeFieldNames& names) {
  const int64_t hidden = config.hidden_size;
  const int64_t q_width = static_cast<int64_t>(config.num_heads) * config.head_dim;
  if (q_width > INT32_MAX) {
    reader.fail(names.head_dim, fmt::format("{} * {} ({}) = {} is out of range (at most {})",
                                            config.head_dim, names.num_heads, config.num_heads,
                                            q_width, INT32_MAX));
  }
  const int64_t kv_width = static_cast<int64_t>(config.num_kv_heads) * config.head_dim;
  check_matrix(reader, names.vocab_size, "the embedding", config.vocab_size, hidden);
  check_matrix(reader, names.num_heads, "the q projection", q_width, hidden);
  check_matrix(reader, names.intermediate_size, "the MLP", config.intermediate_size, hidden);
  const SparseMoeConfig& moe = config.moe;
  check_matrix(reader, "moe_intermediate_size", "an expert", moe.expert_intermediate_size, hidden);
  check_matrix(reader, "shared_expert_intermediate_size", "the shared expert",
               moe.shared_expert_intermediate_size, hidden);
  check_matrix(reader, "num_experts", "the router", moe.num_experts, hidden);
  // Every weight of the canonical decoder, counted generously (dense and sparse MLP both).
  const long double h = static_cast<long double>(hidden);
  const long double per_layer =
      h * static_cast<long double>(2 * q_width + 2 * kv_width) +
      3.0L * h * static_cast<long double>(config.intermediate_size) +
      3.0L * h * static_cast<long double>(moe.expert_intermediate_size) * moe.num_experts +
      3.0L * h * static_cast<long double>(moe.shared_expert_intermediate_size) +
      h * (moe.num_experts + 3);
  const long double total =
      per_layer * config.num_layers + 2.0L * h * static_cast<long double>(config.vocab_size);
  if (total > kMaxParameters) {
    reader.fail(names.num_layers, fmt::format("{} layers of this shape would hold {:.3g} parameters, "
                                              "more than 2^48", config.num_layers,
                                              static_cast<double>(total)));
  }
  if (config.max_position_embeddings > INT32_MAX) {
    reader.fail(names.context, fmt::format("the context length {} (after rope scaling) is out of "
                                           "range (at most {})",
                                           config.max_position_embeddings, INT32_MAX));
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
  config.head_dim = read_head_dim(reader, config, "head_dim");
  if (config.num_heads % config.num_kv_heads != 0) {
    reader.fail("num_key_value_heads", fmt::format("{} does not divide num_attention_heads ({})",
                                                   config.num_kv_heads, config.num_heads));
  }
  config.rms_norm_eps = reader.positive_float_or("rms_norm_eps", 1e-6f);
  config.max_position_embeddings = reader.positive_int_or("max_position_embeddings", 2048);
  parse_rope(reader, config);
}

}  // namespace tpserve::runtime
