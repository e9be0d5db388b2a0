#include "runtime/model/checkpoint_source.h"

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
  return model_config_from_gguf(file->metadata(), names, model);
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
