#include "runtime/families/load_config.h"

#include <nlohmann/json.hpp>
#include <string>

#include "common/error.h"
#include "runtime/families/architecture.h"

namespace tpserve::runtime {

using nlohmann::json;

namespace {

std::string architecture_of(const ConfigReader& reader) {
  const json& config = reader.document();
  if (!config.contains("architectures") || !config["architectures"].is_array() ||
      config["architectures"].empty() || !config["architectures"][0].is_string()) {
    reader.fail("architectures", "missing or not a list of names");
  }
  return config["architectures"][0].get<std::string>();
}

}  // namespace

ModelConfig load_model_config(const std::filesystem::path& dir) {
  ModelConfig config = read_config_file(dir / "config.json");
  config.dir = dir;
  return config;
}

ModelConfig read_config_file(const std::filesystem::path& file) {
  return config_from_json(read_config_json(file), file);
}

ModelConfig config_from_json(const json& root, const std::filesystem::path& file) {
  if (!root.is_object()) {
    raise(ErrorCode::kInvalidArgument, "{}: expected a JSON object", file.string());
  }
  const ConfigReader reader(root, file);
  ModelConfig config;
  config.dir = file.parent_path();
  config.architecture = architecture_of(reader);
  const Architecture* architecture = find_architecture(config.architecture);
  if (architecture == nullptr) {
    std::string supported;
    for (std::string_view name : architecture_names()) {
      supported += (supported.empty() ? "" : ", ") + std::string(name);
    }
    raise(ErrorCode::kUnimplemented, "{}: field 'architectures': '{}' is not supported (supported: {})",
          file.string(), config.architecture, supported);
  }
  config.unknown_fields = check_fields(root, file, architecture->config_fields);
  read_common_fields(reader, config);
  architecture->read_config(reader, config);
  check_shape_sizes(reader, config, architecture->shape_fields);
  config.quant = read_quant_config(root, config.dir);
  config.unknown_fields.insert(config.unknown_fields.end(), config.quant.unknown_fields.begin(),
                               config.quant.unknown_fields.end());
  warn_unknown_fields(file, config.unknown_fields);
  return config;
}

}  // namespace tpserve::runtime
