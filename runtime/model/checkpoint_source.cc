#include "runtime/model/checkpoint_source.h"

#include <algorithm>
#include <system_error>

#include "runtime/families/gguf_config.h"
#include "runtime/families/load_config.h"
#include "runtime/formats/gguf.h"

namespace tpserve::runtime {

namespace fs = std::filesystem;

bool is_gguf_file(const fs::path& path) {
  std::error_code error;
  return fs::is_regular_file(path, error) && GgufFile::looks_like_gguf(path);
}

ModelConfig read_model_config(const fs::path& model) {
  if (!is_gguf_file(model)) return load_model_config(model);
  const std::unique_ptr<GgufFile> file = GgufFile::open(model);
  std::vector<std::string> names;
  for (const GgufTensor& tensor : file->tensors()) names.push_back(tensor.name);
  ModelConfig config = model_config_from_gguf(file->metadata(), names, model);
  // Q8_0 / Q4_0 / Q4_1 matrices stay packed (kernels/quantized.h, group = ggml's 32-value block);
  // every other type is decoded to floats at load. The embedding table is read as floats for the
  // lookup, and, when tied, packed once more as the lm_head (as llama.cpp multiplies by it).
  QuantConfig quant;
  quant.method = QuantMethod::kGguf;
  quant.group_size = kPackedBlockValues;
  quant.file = model;
  for (const GgufTensorName& name : gguf_tensor_names(config)) {
    const GgufTensor* tensor = file->find(name.gguf_name);
    if (tensor == nullptr || tensor->dims.size() != 2) continue;
    if (const int bits = ggml_packed_bits(tensor->type); bits > 0) {
      quant.packed_bits[name.name] = bits;
      quant.bits = std::max(quant.bits, bits);
    }
  }
  if (!quant.packed_bits.empty()) config.quant = std::move(quant);
  return config;
}

void fit_quantization_to(ModelConfig& config, const kernels::Backend& backend) {
  if (config.quant.method == QuantMethod::kGguf && !backend.has_quantized_linear()) config.quant = {};
}

std::unique_ptr<Checkpoint> open_checkpoint(const ModelConfig& config) {
  if (!is_gguf_file(config.dir)) return Checkpoint::open(config.dir);
  std::unique_ptr<GgufFile> file = GgufFile::open(config.dir);
  std::vector<GgufView> views;
  for (const GgufTensorName& name : gguf_tensor_names(config)) {
    GgufView view{name.name, name.gguf_name, {}};
    if (name.permuted_heads > 0) {
      view.row_order = rope_pairs_to_halves_rows(name.permuted_heads, config.head_dim);
    }
    views.push_back(std::move(view));
  }
  return Checkpoint::open_gguf(std::move(file), std::move(views));
}

}  // namespace tpserve::runtime
