// Loading a checkpoint's config.json: the registry picks the family adapter named in its
// "architectures" field, and the adapter fills the ModelConfig. Lives beside the registry so that
// runtime/config/ (the config type and its field readers) knows no family.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <filesystem>

#include "runtime/config/model_config.h"

namespace tpserve::runtime {

// Reads <dir>/config.json and fills ModelConfig through the adapter of its architecture: the
// adapter's field table first (a refused field that is set fails; fields no table lists go to
// config.unknown_fields and one warning line), the family-independent fields
// (read_common_fields), then the adapter's read_config, then the shape checks every family shares
// (check_shape_sizes). Errors (tpserve::Error) name the file and the field: missing file, malformed
// JSON, unknown architecture (listing the supported ones), missing, refused or out-of-range fields,
// and a quantized checkpoint (quantize_config.json / quant_config.json beside config.json).
ModelConfig load_model_config(const std::filesystem::path& dir);

// As load_model_config, for a config JSON file given by path (the shape presets in
// configs/presets/ are config.json files under another name); config.dir is the file's folder.
ModelConfig read_config_file(const std::filesystem::path& file);

// As read_config_file, for a config.json document already parsed (`file` names it in errors).
ModelConfig config_from_json(const nlohmann::json& root, const std::filesystem::path& file);

}  // namespace tpserve::runtime
