#include "runtime/model/shard_loader.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include "common/check.h"
#include "common/error.h"

namespace tpserve::runtime {

namespace {

// `rows` segments of `segment` bytes, `stride` bytes apart from file offset `offset`, landing one
// after another at dst in the compute dtype. rows * segment <= load_chunk_bytes().
struct Piece {
  size_t file = 0;
  uint64_t offset = 0;
  uint64_t segment = 0;
  uint64_t stride = 0;
  int64_t rows = 0;
  DType dtype = DType::kF32;
  char* dst = nullptr;
  size_t target = 0;
  bool strided() const { return rows > 1 && stride != segment; }
  uint64_t file_bytes() const { return segment * static_cast<uint64_t>(rows); }
};

// A checkpoint file opened for pread: one descriptor read front to back (readahead doubled), one
// for row-parallel segments with readahead off, so a rank reading its columns of each row does not
// pull the other ranks' columns from the disk.
struct OpenFile {
  std::string path;
  int sequential = -1;
  int random = -1;
};

int open_for_reading(const std::string& path, int advice) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    raise(ErrorCode::kDataLoss, "{}: cannot open for reading: {}", path, std::strerror(errno));
  }
  (void)::posix_fadvise(fd, 0, 0, advice);  // a hint: its failure changes nothing
  return fd;
}

// Reads exactly `bytes` at `offset`; a file that ends first was truncated after its header was
// validated (Checkpoint::open checked that its tensors tile the whole file).
void read_exactly(const OpenFile& file, int fd, char* out, uint64_t bytes, uint64_t offset) {
  uint64_t done = 0;
  while (done < bytes) {
    const ssize_t got = ::pread(fd, out + done, bytes - done, static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      raise(ErrorCode::kDataLoss, "{}: read of {} bytes at offset {} failed: {}", file.path, bytes,
            offset, std::strerror(errno));
    }
    if (got == 0) {
      raise(ErrorCode::kDataLoss,
            "{}: short read: the file ends at byte {}, before the {} bytes at offset {} its header "
            "promises (truncated while loading?)",
            file.path, offset + done, bytes, offset);
    }
    done += static_cast<uint64_t>(got);
  }
}

// Cuts one block of a checkpoint tensor into pieces of at most `chunk` file bytes.
void add_block_pieces(const Checkpoint& checkpoint, const SourceBlock& block, size_t file,
                      size_t target, int out_element, int64_t chunk, char*& cursor,
                      std::vector<Piece>& pieces) {
  const TensorEntry& entry = checkpoint.tensor(block.tensor);
  const SafetensorsFile& source = *checkpoint.safetensors_of(block.tensor);
  const auto element = static_cast<uint64_t>(dtype_size(entry.dtype));
  const auto cols = static_cast<uint64_t>(entry.cols());
  const auto width = static_cast<uint64_t>(block.cols.size());
  const auto rows = static_cast<uint64_t>(block.rows.size());
  const uint64_t base = source.data_offset() + entry.data_begin +
                        (static_cast<uint64_t>(block.rows.begin) * cols +
                         static_cast<uint64_t>(block.cols.begin)) * element;
  const uint64_t chunk_elements = static_cast<uint64_t>(chunk) / element;
  // Contiguous bytes (whole rows, or one over-long row segment): element-aligned pieces.
  const auto add_run = [&](uint64_t offset, uint64_t elements) {
    for (uint64_t done = 0; done < elements; done += chunk_elements) {
      const uint64_t count = std::min(chunk_elements, elements - done);
      pieces.push_back({file, offset + done * element, count * element, count * element, 1,
                        entry.dtype, cursor, target});
      cursor += count * static_cast<uint64_t>(out_element);
    }
  };
  if (rows == 0 || width == 0) return;
  if (width == cols) {
    add_run(base, rows * cols);
    return;
  }
  const uint64_t segment = width * element;
  if (segment > static_cast<uint64_t>(chunk)) {
    for (uint64_t row = 0; row < rows; ++row) add_run(base + row * cols * element, width);
    return;
  }
  const uint64_t rows_per_piece = static_cast<uint64_t>(chunk) / segment;
  for (uint64_t row = 0; row < rows; row += rows_per_piece) {
    const uint64_t count = std::min(rows_per_piece, rows - row);
    pieces.push_back({file, base + row * cols * element, segment, cols * element,
                      static_cast<int64_t>(count), entry.dtype, cursor, target});
    cursor += count * width * static_cast<uint64_t>(out_element);
  }
}

// Round-robin over the files, each file's pieces in offset order: the threads, taking pieces in
// this order, read several files at once.
std::vector<Piece> interleave_files(std::vector<Piece> pieces, size_t files) {
  std::vector<std::vector<Piece>> by_file(files);
  for (Piece& piece : pieces) by_file[piece.file].push_back(piece);
  for (auto& list : by_file) {
    std::stable_sort(list.begin(), list.end(),
                     [](const Piece& a, const Piece& b) { return a.offset < b.offset; });
  }
  std::vector<Piece> order;
  order.reserve(pieces.size());
  for (size_t i = 0; order.size() < pieces.size(); ++i) {
    for (auto& list : by_file) {
      if (i < list.size()) order.push_back(list[i]);
    }
  }
  return order;
}

}  // namespace

int64_t parse_load_chunk_mib(const char* text) {
  constexpr int64_t kDefaultMib = 8;
  if (text == nullptr || *text == '\0') return kDefaultMib << 20;
  int64_t mib = 0;
  const std::string_view view(text);
  const auto [end, error] = std::from_chars(view.data(), view.data() + view.size(), mib);
  if (error != std::errc() || end != view.data() + view.size() || mib < 1 || mib > 256) {
    raise(ErrorCode::kInvalidArgument,
          "TPSERVE_LOAD_CHUNK_MIB: '{}' is not a whole number of MiB from 1 to 256", view);
  }
  return mib << 20;
}

int64_t load_chunk_bytes() {
  static const int64_t bytes = parse_load_chunk_mib(std::getenv("TPSERVE_LOAD_CHUNK_MIB"));
  return bytes;
}

int default_load_threads() {
  return static_cast<int>(std::clamp<unsigned>(std::thread::hardware_concurrency(), 1, 8));
}

void load_dense_shards(const Checkpoint& checkpoint, std::span<const ShardTarget> targets,
                       kernels::Backend& backend, int threads,
                       const std::function<void(const ShardLoadProgress&)>& progress) {
  const DType compute = backend.compute_dtype();
  const int out_element = dtype_size(compute);
  const int64_t chunk = load_chunk_bytes();
  std::vector<OpenFile> files;
  std::map<const SafetensorsFile*, size_t> file_index;
  std::vector<Piece> pieces;
  std::vector<int64_t> pieces_left(targets.size());
  ShardLoadProgress state;
  const auto close_files = [&] {
    for (OpenFile& file : files) {
      if (file.sequential >= 0) ::close(file.sequential);
      if (file.random >= 0) ::close(file.random);
    }
  };
  try {
    for (size_t t = 0; t < targets.size(); ++t) {
      const WeightShard& weight = *targets[t].weight;
      char* cursor = static_cast<char*>(targets[t].dst);
      const size_t before = pieces.size();
      for (const SourceBlock& block : weight.blocks) {
        const SafetensorsFile* source = checkpoint.safetensors_of(block.tensor);
        TPS_CHECK(source != nullptr, "tensor {} is not in a safetensors file", block.tensor);
        auto [it, added] = file_index.emplace(source, files.size());
        if (added) {
          files.push_back({source->path().string()});
          files.back().sequential = open_for_reading(files.back().path, POSIX_FADV_SEQUENTIAL);
          files.back().random = open_for_reading(files.back().path, POSIX_FADV_RANDOM);
        }
        add_block_pieces(checkpoint, block, it->second, t, out_element, chunk, cursor, pieces);
      }
      pieces_left[t] = static_cast<int64_t>(pieces.size() - before);
      char* end = static_cast<char*>(targets[t].dst) + weight.numel() * out_element;
      if (cursor < end) {  // vocab padding rows
        backend.fill_zero(cursor, static_cast<size_t>(end - cursor));
        state.bytes_done += end - cursor;
      }
    }
  } catch (...) {
    close_files();
    throw;
  }
  pieces = interleave_files(std::move(pieces), files.size());

  const bool host_memory = backend.host_memory();
  const int workers = std::max(
      1, std::min(threads > 0 ? threads : default_load_threads(), static_cast<int>(pieces.size())));
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr first_error;
  std::mutex state_mutex;   // progress, first_error
  for (size_t t = 0; t < targets.size(); ++t) state.weights_done += pieces_left[t] == 0 ? 1 : 0;

  const auto work = [&] {
    char* buffer = nullptr;
    try {
      for (size_t i = next++; i < pieces.size() && !failed.load(); i = next++) {
        const Piece& piece = pieces[i];
        const OpenFile& file = files[piece.file];
        const int fd = piece.strided() ? file.random : file.sequential;
        const int64_t elements =
            static_cast<int64_t>(piece.file_bytes()) / dtype_size(piece.dtype);
        if (host_memory && piece.dtype == compute) {
          // Already the compute dtype in host memory: read straight into the weight.
          for (int64_t r = 0; r < piece.rows; ++r) {
            read_exactly(file, fd, piece.dst + r * piece.segment, piece.segment,
                         piece.offset + static_cast<uint64_t>(r) * piece.stride);
          }
        } else {
          if (buffer == nullptr) buffer = static_cast<char*>(backend.allocate_host(static_cast<size_t>(chunk)));
          for (int64_t r = 0; r < piece.rows; ++r) {
            read_exactly(file, fd, buffer + r * piece.segment, piece.segment,
                         piece.offset + static_cast<uint64_t>(r) * piece.stride);
          }
          backend.upload(piece.dst, piece.dtype, buffer, elements);
        }
        checkpoint.count_bytes_read(piece.file_bytes());
        std::lock_guard<std::mutex> lock(state_mutex);
        state.bytes_done += elements * out_element;
        state.file_bytes_read += static_cast<int64_t>(piece.file_bytes());
        if (--pieces_left[piece.target] == 0) ++state.weights_done;
        if (progress) progress(state);
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(state_mutex);
      if (!first_error) first_error = std::current_exception();
      failed = true;
    }
    if (buffer != nullptr) backend.release_host(buffer);
  };
  std::vector<std::thread> pool;
  for (int w = 1; w < workers; ++w) pool.emplace_back(work);
  work();
  for (std::thread& thread : pool) thread.join();
  close_files();
  if (first_error) std::rethrow_exception(first_error);
  backend.synchronize();
}

}  // namespace tpserve::runtime
