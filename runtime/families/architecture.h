// Family adapters: one per Hugging Face architecture, mapping its checkpoint names, fused layouts
// and config fields onto the canonical decoder. An adapter is data plus a config reader — no
// forward code of its own. Names are patterns where "{}" stands for the layer index and carry no
// ".weight" / ".bias" suffix.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/field_table.h"
#include "parallel/shard_plan.h"
#include "runtime/config/config_fields.h"
#include "runtime/config/model_config.h"

namespace tpserve::runtime {

// Where q, k and v come from: three tensors, or one fused tensor in a known row layout.
struct QkvSource {
  std::string q, k, v;  // separate projections
  std::string fused;    // when non-empty: one tensor holding all three
  parallel::QkvLayout layout = parallel::QkvLayout::kConcatenated;
};

// Where gate and up come from: two tensors, or one fused [gate; up] tensor.
struct GateUpSource {
  std::string gate, up;
  std::string fused;
};

// A sparse (mixture-of-experts) MLP's tensors; empty for dense families. Expert patterns have two
// "{}": the layer, then the expert index.
struct MoeSource {
  std::string router;              // [num_experts, hidden]
  std::string expert_gate, expert_up, expert_down;
  std::string shared_gate, shared_up, shared_down;  // the shared expert's SwiGLU MLP
  std::string shared_expert_gate;  // [1, hidden]: sigmoid gate on the shared expert's output
};

struct Architecture {
  std::string_view name;  // config.json "architectures"[0], e.g. "Qwen2ForCausalLM"
  // Reads the family's config.json fields into config: every shape field, rope and biases (the
  // family-independent ones, read_common_fields, are read before this runs). LLaMA-like families
  // call read_llama_style_fields; others read their own field names.
  void (*read_config)(const ConfigReader& reader, ModelConfig& config) = nullptr;
  // Every config.json field the family knows (supported, harmless or refused): PretrainedConfig's,
  // then the shared shape fields it uses, then its own table. load_model_config refuses a refused
  // field that is set and reports the ones no table lists.
  std::vector<FieldTable> config_fields;
  // Its names for the shape fields, for the shared size checks' errors.
  ShapeFieldNames shape_fields;
  std::string embed;
  std::string final_norm;
  std::string lm_head;  // unused when the config ties word embeddings
  std::string attn_norm;
  std::string mlp_norm;
  QkvSource qkv;
  std::string o;
  GateUpSource gate_up;
  std::string down;
  MoeSource moe;  // layers where config.moe.sparse(layer); gate_up/down name the dense layers' MLP
  // Full names (with their suffix; "{}" is the layer) of tensors some checkpoints of the family
  // ship but the family's own code never reads, so the strict tensor accounting
  // (runtime/model/weights.h) passes them. Each adapter says why, citing that code.
  std::vector<std::string> unread;
};

// The adapter registered for an architecture name, or nullptr.
const Architecture* find_architecture(std::string_view name);

// Every registered architecture name, for error messages and `tpserve --help`.
std::vector<std::string_view> architecture_names();

// Family adapters (one file each).
const Architecture& llama_architecture();
const Architecture& qwen2_architecture();
const Architecture& qwen2_moe_architecture();
const Architecture& qwen_v1_architecture();
const Architecture& internlm2_architecture();
const Architecture& chatglm_architecture();

}  // namespace tpserve::runtime
