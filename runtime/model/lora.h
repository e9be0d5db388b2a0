// PEFT LoRA adapters (adapter_config.json + adapter_model.safetensors, as PEFT and LLaMA-Factory
// save them) merged into the base weights at load, shard by shard: every staged block of a
// targeted weight W gets W[rows, cols] += scaling * B[rows, :] A[:, cols], with
// scaling = lora_alpha / r (lora_alpha / sqrt(r) with use_rslora) — PEFT's merge, done on this
// rank's rows/columns only, so no rank ever materialises a whole merged matrix. Fused base tensors
// (Qwen v1 c_attn, ChatGLM query_key_value) work unchanged: B's rows follow the fused rows.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/formats/safetensors.h"
#include "runtime/model/weight_plan.h"

namespace tpserve::runtime {

class LoraAdapter {
 public:
  // Reads <dir>/adapter_config.json and maps <dir>/adapter_model.safetensors. Errors name the file
  // and the field (every field lora.cc's table refuses: not a LORA adapter, DoRA, fan_in_fan_out,
  // bias training, modules_to_save, per-module rank/alpha patterns, layer_replication, activated
  // LoRA, ...) or the tensor (embedding LoRA, a lora_A without its lora_B). Fields the table does
  // not know are logged once and kept in unknown_fields().
  static std::unique_ptr<LoraAdapter> open(const std::filesystem::path& dir);

  // Checks the adapter against the base model's weight plan before anything is read: every pair
  // targets a linear weight the model loads, lora_A is [r, in_features] and lora_B is
  // [out_features, r] of that weight. Throws kInvalidArgument naming the adapter tensor.
  void validate(const std::vector<WeightShard>& plan) const;

  // Adds the LoRA delta to one staged block ((rows x cols) float32, row-major) of a base weight.
  // No-op for a block of a tensor the adapter does not target.
  void merge(const SourceBlock& block, float* staged) const;

  size_t num_targets() const { return targets_.size(); }
  float scaling() const { return scaling_; }
  int rank() const { return rank_; }
  const std::vector<std::string>& unknown_fields() const { return unknown_fields_; }

 private:
  struct Target {
    const TensorEntry* a = nullptr;  // lora_A [r, in]
    const TensorEntry* b = nullptr;  // lora_B [out, r]
  };

  LoraAdapter() = default;
  void read_config(const std::filesystem::path& file);
  void index_tensors();
  std::vector<float> read_rows(const TensorEntry& entry, int64_t begin, int64_t end) const;

  std::unique_ptr<SafetensorsFile> file_;
  int rank_ = 0;
  float scaling_ = 1.0f;
  std::vector<std::string> unknown_fields_;  // adapter_config.json fields no table lists
  std::map<std::string, Target> targets_;  // base tensor name ("...q_proj.weight") -> factors
};

}  // namespace tpserve::runtime
