#include "runtime/model/lora.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/field_table.h"
#include "runtime/config/model_config.h"

namespace tpserve::runtime {

namespace {

constexpr std::string_view kPrefix = "base_model.model.";  // PEFT's wrapper around the base
constexpr std::string_view kSuffixA = ".lora_A.weight";
constexpr std::string_view kSuffixB = ".lora_B.weight";

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

using enum FieldUse;

// PEFT's LoraConfig (peft/tuners/lora/config.py) and PeftConfig fields. Supported: a plain
// W + scaling * B A of the base's own linear weights. The adapter's tensors, not target_modules,
// say what is merged (index_tensors, validate), so the targeting fields are harmless.
constexpr FieldRule kAdapterConfigFields[] = {
    {"r", kSupported, "the rank"},
    {"lora_alpha", kSupported, "scaling = lora_alpha / r"},
    {"use_rslora", kSupported, "scaling = lora_alpha / sqrt(r)"},
    {"peft_type", kRefused, "only LORA adapters are", "\"LORA\""},
    {"bias", kRefused, "trained biases are not supported", "\"none\""},
    {"use_dora", kRefused, "DoRA (a magnitude vector over the merged weight) is not supported"},
    {"fan_in_fan_out", kRefused, "transposed (Conv1D) LoRA weights are not supported"},
    {"rank_pattern", kRefused, "per-module ranks are not supported"},
    {"alpha_pattern", kRefused, "per-module alphas are not supported"},
    {"modules_to_save", kRefused, "replaced (fully trained) modules are not supported"},
    // PEFT runs base layers in the replicated order, each copy with its own adapter; merging the
    // copies' factors into the original layers computes something else.
    {"layer_replication", kRefused, "layer replication is not supported"},
    // Activated LoRA applies the adapter only after the invocation tokens: not a merge.
    {"alora_invocation_tokens", kRefused, "activated LoRA (aLoRA) is not supported"},
    {"lora_bias", kRefused, "a bias on lora_B is not supported"},
    {"use_qalora", kRefused, "QA-LoRA (pooled inputs) is not supported"},
    {"target_parameters", kRefused, "LoRA on nn.Parameter targets (e.g. MoE experts) is not supported"},
    {"trainable_token_indices", kRefused, "trained token embeddings are not supported"},
    {"arrow_config", kRefused, "Arrow routing between adapters is not supported"},
    {"use_bdlora", kRefused, "block-diagonal LoRA is not supported"},
    {"kasa_config", kRefused, "KaSA adapters are not supported"},
    {"monteclora_config", kRefused, "MonteCLoRA adapters are not supported"},
    {"velora_config", kRefused, "VeLoRA adapters are not supported"},
    {"target_modules", kHarmless, "the adapter's tensors name the targets"},
    {"exclude_modules", kHarmless, "the adapter's tensors name the targets"},
    {"layers_to_transform", kHarmless, "the adapter's tensors name the layers"},
    {"layers_pattern", kHarmless, "the adapter's tensors name the layers"},
    {"lora_dropout", kHarmless, "training only"},
    {"init_lora_weights", kHarmless, "initialisation only"},
    {"loftq_config", kHarmless, "initialisation only"},
    {"eva_config", kHarmless, "initialisation only"},
    {"corda_config", kHarmless, "initialisation only"},
    {"lora_ga_config", kHarmless, "initialisation only"},
    {"qalora_group_size", kHarmless, "used only with use_qalora"},
    {"megatron_config", kHarmless, "training-time parallel layers"},
    {"megatron_core", kHarmless, "training-time parallel layers"},
    {"ensure_weight_tying", kHarmless, "ties embedding adapters, which are refused by tensor name"},
    {"runtime_config", kHarmless, "loading options"},
    {"inference_mode", kHarmless, "bookkeeping"},
    {"task_type", kHarmless, "bookkeeping"},
    {"auto_mapping", kHarmless, "bookkeeping"},
    {"base_model_name_or_path", kHarmless, "bookkeeping (--model names the base)"},
    {"revision", kHarmless, "bookkeeping"},
    {"peft_version", kHarmless, "bookkeeping"},
};

nlohmann::json read_json(const std::filesystem::path& file) {
  std::ifstream stream(file);
  if (!stream) raise(ErrorCode::kNotFound, "{}: cannot open (missing or unreadable)", file.string());
  try {
    nlohmann::json root = nlohmann::json::parse(stream);
    if (!root.is_object()) raise(ErrorCode::kInvalidArgument, "{}: expected a JSON object", file.string());
    return root;
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for 1e999
    raise(ErrorCode::kInvalidArgument, "{}: malformed JSON: {}", file.string(), e.what());
  }
}

}  // namespace

std::unique_ptr<LoraAdapter> LoraAdapter::open(const std::filesystem::path& dir) {
  std::unique_ptr<LoraAdapter> adapter(new LoraAdapter());
  adapter->read_config(dir / "adapter_config.json");
  adapter->file_ = SafetensorsFile::open(dir / "adapter_model.safetensors");
  adapter->index_tensors();
  return adapter;
}

void LoraAdapter::read_config(const std::filesystem::path& file) {
  const nlohmann::json root = read_json(file);
  const ConfigReader reader(root, file);
  unknown_fields_ = check_fields(root, file, {kAdapterConfigFields});
  warn_unknown_fields(file, unknown_fields_);
  rank_ = static_cast<int>(reader.positive_int("r"));
  const float alpha = reader.positive_float_or("lora_alpha", static_cast<float>(rank_));
  const bool rslora = reader.bool_or("use_rslora", false);
  scaling_ = alpha / (rslora ? std::sqrt(static_cast<float>(rank_)) : static_cast<float>(rank_));
}

void LoraAdapter::index_tensors() {
  const std::string file = file_->path().string();
  for (const TensorEntry& entry : file_->tensors()) {
    const std::string_view name = entry.name;
    const bool is_a = ends_with(name, kSuffixA);
    if ((!is_a && !ends_with(name, kSuffixB)) || !name.starts_with(kPrefix)) {
      raise(ErrorCode::kInvalidArgument,
            "{}: tensor '{}' is not a LoRA factor ('base_model.model.<module>.lora_A.weight' or "
            "'.lora_B.weight'); embedding LoRA and extra modules are not supported", file, name);
    }
    const std::string_view module =
        name.substr(kPrefix.size(), name.size() - kPrefix.size() - kSuffixA.size());
    Target& target = targets_[std::string(module) + ".weight"];
    (is_a ? target.a : target.b) = &entry;
  }
  for (const auto& [base, target] : targets_) {
    if (target.a == nullptr || target.b == nullptr) {
      raise(ErrorCode::kInvalidArgument, "{}: tensor '{}' has no matching {}", file,
            (target.a ? target.a : target.b)->name, target.a ? "lora_B" : "lora_A");
    }
  }
}

void LoraAdapter::validate(const std::vector<WeightShard>& plan) const {
  std::map<std::string, const SourceBlock*> loaded;  // 2-D base weights the model reads
  for (const WeightShard& weight : plan) {
    for (const SourceBlock& block : weight.blocks) {
      if (block.full_cols > 1) loaded.emplace(block.tensor, &block);
    }
  }
  const std::string file = file_->path().string();
  for (const auto& [base, target] : targets_) {
    const auto it = loaded.find(base);
    if (it == loaded.end()) {
      raise(ErrorCode::kInvalidArgument,
            "{}: tensor '{}' targets '{}', which is not a linear weight of the base model", file,
            target.a->name, base);
    }
    const SourceBlock& block = *it->second;
    const auto check = [&](const TensorEntry& entry, int64_t rows, int64_t cols, const char* what) {
      if (entry.shape.size() != 2 || entry.shape[0] != rows || entry.shape[1] != cols) {
        raise(ErrorCode::kInvalidArgument,
              "{}: tensor '{}' has shape [{}], expected [{}, {}] ({} of base '{}' [{}, {}], r = {} "
              "from adapter_config.json)",
              file, entry.name, fmt::join(entry.shape, ", "), rows, cols, what, base,
              block.full_rows, block.full_cols, rank_);
      }
      if (!is_weight_dtype(entry.dtype)) {
        raise(ErrorCode::kInvalidArgument, "{}: tensor '{}' has dtype {}; expected F32, F16 or BF16",
              file, entry.name, dtype_name(entry.dtype));
      }
    };
    check(*target.a, rank_, block.full_cols, "[r, in_features]");
    check(*target.b, block.full_rows, rank_, "[out_features, r]");
  }
}

std::vector<float> LoraAdapter::read_rows(const TensorEntry& entry, int64_t begin,
                                          int64_t end) const {
  const int64_t cols = entry.cols();
  const uint64_t element = static_cast<uint64_t>(dtype_size(entry.dtype));
  std::vector<float> out(static_cast<size_t>((end - begin) * cols));
  const auto bytes = file_->bytes(entry, static_cast<uint64_t>(begin * cols) * element,
                                  static_cast<uint64_t>((end - begin) * cols) * element);
  convert_to_f32(entry.dtype, bytes.data(), out.data(), static_cast<int64_t>(out.size()));
  return out;
}

void LoraAdapter::merge(const SourceBlock& block, float* staged) const {
  const auto it = targets_.find(block.tensor);
  if (it == targets_.end()) return;
  const std::vector<float> b = read_rows(*it->second.b, block.rows.begin, block.rows.end);  // [rows, r]
  const std::vector<float> a = read_rows(*it->second.a, 0, rank_);                         // [r, in]
  const int64_t in = it->second.a->cols();
  const int64_t cols = block.cols.size();
  for (int64_t i = 0; i < block.rows.size(); ++i) {
    float* row = staged + i * cols;
    for (int k = 0; k < rank_; ++k) {
      const float weight = scaling_ * b[static_cast<size_t>(i * rank_ + k)];
      const float* a_row = a.data() + k * in + block.cols.begin;
      for (int64_t j = 0; j < cols; ++j) row[j] += weight * a_row[j];
    }
  }
}

}  // namespace tpserve::runtime
