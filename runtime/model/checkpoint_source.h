// Where a model's config and weights come from: a Hugging Face checkpoint directory (config.json +
// safetensors) or one GGUF file (its metadata and tensors, seen through the llama / qwen2 adapters'
// GGUF names). Every command that takes --model goes through these two.
#pragma once

#include <filesystem>
#include <memory>

#include "kernels/ops.h"
#include "runtime/config/model_config.h"
#include "runtime/formats/safetensors.h"

namespace tpserve::runtime {

// True when `path` is a regular file starting with the GGUF magic.
bool is_gguf_file(const std::filesystem::path& path);

// load_model_config for a directory; model_config_from_gguf for a GGUF file (config.dir is then the
// file). Errors name the file and the field.
ModelConfig read_model_config(const std::filesystem::path& model);

// The checkpoint config.dir names. For a GGUF file, its tensors appear under the adapter's names,
// llama's attn_q / attn_k rows put back in rotate_half order.
std::unique_ptr<Checkpoint> open_checkpoint(const ModelConfig& config);

// A GGUF file's packed weights need the backend's quantized_linear; on a backend without it (CUDA
// for now) they load as float32, as every GGUF weight did before: config.quant is cleared.
// GPTQ / AWQ are left as they are (they have no float form; the backend refuses by name).
void fit_quantization_to(ModelConfig& config, const kernels::Backend& backend);

}  // namespace tpserve::runtime
