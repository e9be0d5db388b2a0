// The config.json field tables every family shares (common/field_table.h): PretrainedConfig's own
// fields, the LLaMA-style shape fields, and the keys of a rope_scaling / rope_parameters object.
// Each family adds its own table in its adapter (runtime/families/arch_*.cc).
#pragma once

#include "common/field_table.h"

namespace tpserve::runtime {

// transformers' PretrainedConfig (configuration_utils.py): bookkeeping, task heads, the legacy
// generation defaults, and the fields read_common_fields reads.
extern const FieldTable kPretrainedConfigFields;

// The fields read_llama_style_fields reads (LlamaConfig's names, shared by Qwen2, Qwen2-MoE and
// InternLM2).
extern const FieldTable kLlamaStyleFields;

// Keys inside rope_scaling (or transformers 5's rope_parameters), reported as "rope_scaling.<key>".
extern const FieldTable kRopeScalingFields;

}  // namespace tpserve::runtime
