#include "runtime/weights.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "common/check.h"
#include "common/error.h"

namespace tpserve::runtime {

void validate_weights(const Checkpoint& checkpoint, const std::vector<WeightShard>& plan) {
  for (const WeightShard& weight : plan) {
    for (const SourceBlock& block : weight.blocks) {
      const TensorEntry& entry = checkpoint.tensor(block.tensor);  // kNotFound names the tensor
      const std::string file = checkpoint.file_of(block.tensor).path().string();
      if (!is_weight_dtype(entry.dtype)) {
        raise(ErrorCode::kInvalidArgument,
              "{}: tensor '{}' has dtype {}; weights must be F32, F16 or BF16", file, block.tensor,
              dtype_name(entry.dtype));
      }
      const size_t expected_rank = block.full_cols == 1 ? 1 : 2;
      if (entry.shape.size() != expected_rank || entry.rows() != block.full_rows ||
          entry.cols() != block.full_cols) {
        const std::string expected =
            expected_rank == 1 ? fmt::format("[{}]", block.full_rows)
                               : fmt::format("[{}, {}]", block.full_rows, block.full_cols);
        raise(ErrorCode::kInvalidArgument,
              "{}: tensor '{}' has shape [{}], expected {} ({} from config.json)", file,
              block.tensor, fmt::join(entry.shape, ", "), expected, block.shape_meaning);
      }
    }
  }
}

void WeightStore::load(const Checkpoint& checkpoint, const std::vector<WeightShard>& plan,
                       kernels::Backend& backend,
                       const std::function<void(const LoadProgress&)>& progress) {
  validate_weights(checkpoint, plan);
  const int element = dtype_size(backend.compute_dtype());
  LoadProgress state;
  state.weights_total = plan.size();
  int64_t largest = 0;
  for (const WeightShard& weight : plan) {
    state.bytes_total += weight.numel() * element;
    largest = std::max(largest, weight.numel());
  }
  std::vector<float> staging(static_cast<size_t>(largest));
  for (const WeightShard& weight : plan) {
    float* cursor = staging.data();
    for (const SourceBlock& block : weight.blocks) {
      checkpoint.read_f32(block.tensor, block.rows.begin, block.rows.end, block.cols.begin,
                          block.cols.end, cursor);
      cursor += block.rows.size() * block.cols.size();
    }
    std::fill(cursor, staging.data() + weight.numel(), 0.0f);  // vocab padding rows
    DeviceBuffer buffer(backend, static_cast<size_t>(weight.numel()) * element);
    backend.upload_f32(buffer.data(), staging.data(), weight.numel());
    bytes_ += buffer.bytes();
    TPS_CHECK(buffers_.emplace(weight.name, std::move(buffer)).second, "duplicate weight {}",
              weight.name);
    state.bytes_done += weight.numel() * element;
    ++state.weights_done;
    if (progress) progress(state);
  }
}

const void* WeightStore::find(const std::string& name) const {
  auto it = buffers_.find(name);
  return it == buffers_.end() ? nullptr : it->second.data();
}

const void* WeightStore::get(const std::string& name) const {
  const void* data = find(name);
  TPS_CHECK(data != nullptr, "weight '{}' was not loaded", name);
  return data;
}

}  // namespace tpserve::runtime
