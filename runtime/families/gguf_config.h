// The GGUF side of the llama and qwen2 adapters (facts from llama.cpp's convert_hf_to_gguf.py and
// gguf-py's constants.py): which metadata keys become which config.json fields, which GGUF tensor
// names are which of the adapter's tensors, and the row order convert_hf_to_gguf gives llama-arch
// attn_q / attn_k. Knows no file format: the caller hands over the metadata as JSON and the tensor
// names (runtime/formats/gguf.h reads them).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "runtime/config/model_config.h"

namespace tpserve::runtime {

// general.architecture -> the adapter's architecture name; config.dir is the GGUF file. The keys
// are checked against a field table (unknown ones are reported once, refused ones -- rope scaling,
// experts, sliding windows -- refused by name), translated to config.json fields and read through
// the adapter's own config reader and shape checks. An architecture other than llama and qwen2 ->
// kUnimplemented naming it. `tensor_names` says whether output.weight exists (tied embeddings) and
// whether llama's attention has biases.
ModelConfig model_config_from_gguf(const nlohmann::json& metadata,
                                   const std::vector<std::string>& tensor_names,
                                   const std::filesystem::path& file);

// One GGUF tensor as the adapter knows it.
struct GgufTensorName {
  std::string gguf_name;  // "blk.3.attn_q.weight"
  std::string name;       // "model.layers.3.self_attn.q_proj.weight"
  // > 0: convert_hf_to_gguf's LlamaModel.permute reordered the rows of each of this many heads
  // from rotate_half's (first half, second half) to interleaved pairs; undo with
  // rope_pairs_to_halves_rows.
  int permuted_heads = 0;
};

// Every tensor the config implies, in GGUF and adapter names (biases included when the config has
// them; output.weight only when the embeddings are not tied).
std::vector<GgufTensorName> gguf_tensor_names(const ModelConfig& config);

// Row i of the Hugging Face q/k weight is row order[i] of the GGUF one: within each head of
// head_dim rows, HF row (half * head_dim / 2 + j) is GGUF row (2 * j + half).
std::vector<int64_t> rope_pairs_to_halves_rows(int heads, int head_dim);

}  // namespace tpserve::runtime
