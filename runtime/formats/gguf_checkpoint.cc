// Checkpoint's GGUF side: a GGUF file's tensors under the adapters' names, decoded on read.
#include <fmt/format.h>

#include <algorithm>

#include "common/error.h"
#include "runtime/formats/gguf.h"
#include "runtime/formats/safetensors.h"

namespace tpserve::runtime {

Checkpoint::~Checkpoint() = default;

std::unique_ptr<Checkpoint> Checkpoint::open_gguf(std::unique_ptr<GgufFile> file,
                                                  std::vector<GgufView> views) {
  std::unique_ptr<Checkpoint> checkpoint(new Checkpoint());
  checkpoint->dir_ = file->path();
  const std::string path = file->path().string();
  std::map<std::string, const GgufView*, std::less<>> by_gguf_name;
  for (const GgufView& view : views) {
    if (!by_gguf_name.emplace(view.gguf_name, &view).second) {
      raise(ErrorCode::kInvalidArgument, "{}: tensor '{}' is viewed twice", path, view.gguf_name);
    }
    if (file->find(view.gguf_name) == nullptr) {
      raise(ErrorCode::kNotFound, "{}: tensor '{}' not found in the GGUF file", path, view.gguf_name);
    }
  }
  for (const GgufTensor& tensor : file->tensors()) {
    auto view = by_gguf_name.find(tensor.name);
    auto entry = std::make_unique<TensorEntry>();
    entry->name = view == by_gguf_name.end() ? tensor.name : view->second->name;
    entry->dtype = DType::kF32;
    entry->shape = tensor.dims.size() == 1 ? tensor.dims
                                           : std::vector<int64_t>{tensor.rows(), tensor.cols()};
    Located located{nullptr, entry.get(), &tensor, nullptr};
    if (view != by_gguf_name.end() && !view->second->row_order.empty()) {
      std::vector<int64_t> order = view->second->row_order;
      std::vector<int64_t> sorted = order;
      std::sort(sorted.begin(), sorted.end());
      bool permutation = static_cast<int64_t>(sorted.size()) == tensor.rows();
      for (size_t i = 0; permutation && i < sorted.size(); ++i) {
        permutation = sorted[i] == static_cast<int64_t>(i);
      }
      if (!permutation) {
        raise(ErrorCode::kInvalidArgument, "{}: tensor '{}': the row order is not a permutation of "
              "its {} rows", path, tensor.name, tensor.rows());
      }
      checkpoint->row_orders_.push_back(std::make_unique<std::vector<int64_t>>(std::move(order)));
      located.row_order = checkpoint->row_orders_.back().get();
    }
    if (!checkpoint->tensors_.emplace(entry->name, located).second) {
      raise(ErrorCode::kInvalidArgument, "{}: two tensors appear as '{}'", path, entry->name);
    }
    checkpoint->gguf_entries_.push_back(std::move(entry));
  }
  checkpoint->gguf_ = std::move(file);
  return checkpoint;
}

void Checkpoint::read_gguf(const Located& located, std::string_view name, int64_t row_begin,
                           int64_t row_end, int64_t col_begin, int64_t col_end, size_t value_bytes,
                           std::byte* out, const GgufRead& read) const {
  const GgufTensor& tensor = *located.gguf;
  if (tensor.dims.size() == 1) {
    // A vector is an [n, 1] matrix to the adapters (TensorEntry::rows), one row of n to GGUF.
    if (col_begin != 0 || col_end != 1) {
      raise(ErrorCode::kOutOfRange, "{}: tensor '{}': cols [{}, {}) of a vector (only [0, 1))",
            dir_.string(), name, col_begin, col_end);
    }
    bytes_read_.fetch_add(read(tensor, 0, 1, row_begin, row_end, out), std::memory_order_relaxed);
    return;
  }
  if (row_begin < 0 || row_begin > row_end || row_end > tensor.rows()) {
    raise(ErrorCode::kOutOfRange, "{}: tensor '{}': rows [{}, {}) are outside its {} rows",
          dir_.string(), name, row_begin, row_end, tensor.rows());
  }
  if (located.row_order == nullptr) {
    bytes_read_.fetch_add(read(tensor, row_begin, row_end, col_begin, col_end, out),
                          std::memory_order_relaxed);
    return;
  }
  const size_t row_bytes = static_cast<size_t>(col_end - col_begin) * value_bytes;
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t source = (*located.row_order)[static_cast<size_t>(row)];
    bytes_read_.fetch_add(read(tensor, source, source + 1, col_begin, col_end, out),
                          std::memory_order_relaxed);
    out += row_bytes;
  }
}

std::optional<GgmlType> Checkpoint::gguf_type(std::string_view name) const {
  const Located& located = locate(name);
  if (located.gguf == nullptr) return std::nullopt;
  return located.gguf->type;
}

void Checkpoint::read_packed(
    std::string_view name, int64_t row_begin, int64_t row_end, int64_t col_begin, int64_t col_end,
    const std::function<void(int64_t, const PackedBlock*, int64_t)>& sink) const {
  const Located& located = locate(name);
  if (located.gguf == nullptr || located.gguf->dims.size() != 2) {
    raise(ErrorCode::kInvalidArgument, "{}: tensor '{}' is not a packed GGUF matrix",
          dir_.string(), name);
  }
  const GgufTensor& tensor = *located.gguf;
  if (row_begin < 0 || row_begin > row_end || row_end > tensor.rows()) {
    raise(ErrorCode::kOutOfRange, "{}: tensor '{}': rows [{}, {}) are outside its {} rows",
          dir_.string(), name, row_begin, row_end, tensor.rows());
  }
  if (located.row_order == nullptr) {
    bytes_read_.fetch_add(gguf_->read_packed(tensor, row_begin, row_end, col_begin, col_end,
                                             [&](int64_t row, const PackedBlock* blocks,
                                                 int64_t count) {
                                               sink(row - row_begin, blocks, count);
                                             }),
                          std::memory_order_relaxed);
    return;
  }
  // A row reorder (llama's q/k): each view row is one file row, codes, scale and min together.
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t source = (*located.row_order)[static_cast<size_t>(row)];
    bytes_read_.fetch_add(gguf_->read_packed(tensor, source, source + 1, col_begin, col_end,
                                             [&](int64_t, const PackedBlock* blocks,
                                                 int64_t count) {
                                               sink(row - row_begin, blocks, count);
                                             }),
                          std::memory_order_relaxed);
  }
}

}  // namespace tpserve::runtime
