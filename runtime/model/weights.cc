#include "runtime/model/weights.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "common/check.h"
#include "common/error.h"
#include "runtime/model/quantized_load.h"
#include "runtime/model/shard_loader.h"

namespace tpserve::runtime {

void validate_weights(const Checkpoint& checkpoint, const std::vector<WeightShard>& plan,
                      const QuantConfig& quant) {
  for (const WeightShard& weight : plan) {
    if (shard_is_quantized(checkpoint, quant, weight)) {
      validate_quantized_shard(checkpoint, quant, weight);
      continue;
    }
    for (const SourceBlock& block : weight.blocks) {
      const TensorEntry& entry = checkpoint.tensor(block.tensor);  // kNotFound names the tensor
      const std::string file = checkpoint.path_of(block.tensor).string();
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

std::vector<std::string> check_unused_tensors(const Checkpoint& checkpoint,
                                              const std::set<std::string>& accounted,
                                              bool allow_unused) {
  std::vector<std::string> unused;
  for (std::string& name : checkpoint.tensor_names()) {
    if (!accounted.contains(name)) unused.push_back(std::move(name));
  }
  if (unused.empty() || allow_unused) return unused;
  constexpr size_t kListed = 8;
  std::string more;
  for (size_t i = 1; i < unused.size() && i <= kListed; ++i) {
    more += fmt::format(", '{}'", unused[i]);
  }
  if (unused.size() > kListed + 1) more += fmt::format(" and {} more", unused.size() - kListed - 1);
  raise(ErrorCode::kInvalidArgument,
        "{}: tensor '{}'{} {} not read by the model config.json describes (a config that does not "
        "match the checkpoint, or a variant this adapter does not know); "
        "--allow-unused-tensors loads anyway, ignoring them",
        checkpoint.path_of(unused[0]).string(), unused[0], more,
        unused.size() == 1 ? "is" : "are");
}

void WeightStore::store(const WeightShard& weight, DeviceBuffer buffer, LoadProgress& state,
                        const std::function<void(const LoadProgress&)>& progress) {
  bytes_ += buffer.bytes();
  state.bytes_done += static_cast<int64_t>(buffer.bytes());
  TPS_CHECK(buffers_.emplace(weight.name, std::move(buffer)).second, "duplicate weight {}",
            weight.name);
  ++state.weights_done;
  if (progress) progress(state);
}

void WeightStore::load(const Checkpoint& checkpoint, const std::vector<WeightShard>& plan,
                       kernels::Backend& backend,
                       const std::function<void(const LoadProgress&)>& progress,
                       const LoraAdapter* lora, const QuantConfig& quant, int load_threads) {
  validate_weights(checkpoint, plan, quant);
  if (lora != nullptr) lora->validate(plan);
  const int element = dtype_size(backend.compute_dtype());
  const uint64_t read_before = checkpoint.bytes_read();
  LoadProgress state;
  state.weights_total = plan.size();
  // Float shards of safetensors files go through the parallel reader; the rest (quantized, GGUF,
  // LoRA-merged) one by one below.
  enum class Path { kParallel, kQuantized, kStaged };
  std::vector<Path> path(plan.size(), Path::kParallel);
  int64_t largest = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    const WeightShard& weight = plan[i];
    if (shard_is_quantized(checkpoint, quant, weight)) {
      if (lora != nullptr) {
        raise(ErrorCode::kUnimplemented, "{}: LoRA adapters on quantized weights ('{}') are not "
              "supported", checkpoint.dir().string(), weight.blocks.front().tensor);
      }
      path[i] = Path::kQuantized;
      state.bytes_total += shard_bytes(weight, quant, element);
      continue;
    }
    state.bytes_total += weight.numel() * element;
    const bool all_safetensors =
        std::all_of(weight.blocks.begin(), weight.blocks.end(), [&](const SourceBlock& block) {
          return checkpoint.safetensors_of(block.tensor) != nullptr;
        });
    if (lora != nullptr || !all_safetensors) {
      path[i] = Path::kStaged;
      largest = std::max(largest, weight.numel());
    }
  }
  const auto report = [&] {
    state.file_bytes_read = static_cast<int64_t>(checkpoint.bytes_read() - read_before);
    if (progress) progress(state);
  };

  std::vector<ShardTarget> targets;
  std::vector<DeviceBuffer> parallel_buffers;
  for (size_t i = 0; i < plan.size(); ++i) {
    if (path[i] != Path::kParallel) continue;
    parallel_buffers.emplace_back(backend, static_cast<size_t>(plan[i].numel()) * element);
    targets.push_back({&plan[i], parallel_buffers.back().data()});
  }
  if (!targets.empty()) {
    load_dense_shards(checkpoint, targets, backend, load_threads,
                      [&](const ShardLoadProgress& p) {
                        state.bytes_done = p.bytes_done;
                        state.weights_done = p.weights_done;
                        report();
                      });
    for (size_t t = 0; t < targets.size(); ++t) {
      bytes_ += parallel_buffers[t].bytes();
      TPS_CHECK(buffers_.emplace(targets[t].weight->name, std::move(parallel_buffers[t])).second,
                "duplicate weight {}", targets[t].weight->name);
    }
  }

  std::vector<float> staging;
  std::vector<std::byte> stored;
  for (size_t i = 0; i < plan.size(); ++i) {
    const WeightShard& weight = plan[i];
    if (path[i] == Path::kQuantized) {
      store_quantized(weight, read_quantized_shard(checkpoint, quant, weight), backend, state, {});
      report();
      continue;
    }
    if (path[i] != Path::kStaged) continue;
    const bool as_stored =
        lora == nullptr &&
        std::all_of(weight.blocks.begin(), weight.blocks.end(), [&](const SourceBlock& block) {
          return checkpoint.stored_float_dtype(block.tensor).has_value();
        });
    if (as_stored) {
      // GGUF F32 / F16 / BF16 tensors: their bytes as stored, converted by the backend (on a GPU
      // after the bus, as the parallel reader's are); an F32 block on the CPU is read in place.
      DeviceBuffer buffer(backend, static_cast<size_t>(weight.numel()) * element);
      char* out = static_cast<char*>(buffer.data());
      for (const SourceBlock& block : weight.blocks) {
        const DType dtype = *checkpoint.stored_float_dtype(block.tensor);
        const int64_t n = block.rows.size() * block.cols.size();
        void* into = out;
        if (!backend.host_memory() || dtype != backend.compute_dtype()) {
          stored.resize(static_cast<size_t>(n * dtype_size(dtype)));
          into = stored.data();
        }
        checkpoint.read_stored(block.tensor, block.rows.begin, block.rows.end, block.cols.begin,
                               block.cols.end, into);
        if (into != out) backend.upload(out, dtype, into, n);
        out += n * element;
      }
      char* end = static_cast<char*>(buffer.data()) + weight.numel() * element;
      if (out < end) backend.fill_zero(out, static_cast<size_t>(end - out));  // vocab padding rows
      store(weight, std::move(buffer), state, {});
      report();
      continue;
    }
    staging.resize(static_cast<size_t>(largest));
    float* cursor = staging.data();
    for (const SourceBlock& block : weight.blocks) {
      checkpoint.read_f32(block.tensor, block.rows.begin, block.rows.end, block.cols.begin,
                          block.cols.end, cursor);
      if (lora != nullptr) lora->merge(block, cursor);
      cursor += block.rows.size() * block.cols.size();
    }
    std::fill(cursor, staging.data() + weight.numel(), 0.0f);  // vocab padding rows
    DeviceBuffer buffer(backend, static_cast<size_t>(weight.numel()) * element);
    backend.upload_f32(buffer.data(), staging.data(), weight.numel());
    store(weight, std::move(buffer), state, {});
    report();
  }
}

namespace {

constexpr int64_t kSyntheticChunk = int64_t{1} << 22;  // floats per host chunk (16 MiB)

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// values[i] = uniform in [-scale, scale) from (seed, first + i); xorshift within 4096-value runs
// seeded by splitmix64, so any chunking of the same range gives the same values.
void fill_uniform(float* values, int64_t first, int64_t n, float scale, uint64_t seed) {
  constexpr int64_t kRun = 4096;
  int64_t i = 0;
  while (i < n) {
    const int64_t index = first + i;
    const int64_t run = index / kRun;
    uint64_t state = splitmix64(seed ^ splitmix64(static_cast<uint64_t>(run))) | 1;
    for (int64_t skip = index % kRun; skip > 0; --skip) {
      state ^= state << 13; state ^= state >> 7; state ^= state << 17;
    }
    const int64_t end = std::min(n, i + (kRun - index % kRun));
    for (; i < end; ++i) {
      state ^= state << 13; state ^= state >> 7; state ^= state << 17;
      const float unit = static_cast<float>(state >> 40) * (1.0f / 16777216.0f);  // [0, 1)
      values[i] = (2.0f * unit - 1.0f) * scale;
    }
  }
}

// A linear shard packed as `quant` would pack it (groups in column order): random codes, each
// group's scale and zero such that scale * (code - zero) spans [-0.02, 0.02].
kernels::QuantizedHostMatrix synthetic_quantized(const WeightShard& weight, const QuantConfig& quant,
                                                 int bits, uint64_t seed) {
  const int64_t group = quant.group_size > 0 ? quant.group_size : weight.cols;
  const int64_t groups = (weight.cols + group - 1) / group;
  kernels::QuantizedHostMatrix host(bits, weight.rows, weight.cols, group, groups);
  // Random bytes in runs of 1 MiB, each from its own xorshift seeded by (seed, run): the same
  // bytes whatever the number of threads filling them (a 72B model has ~36 GB of codes).
  std::vector<uint8_t>& codes = host.code_bytes();
  constexpr size_t kRun = size_t{1} << 20;
  const size_t runs = (codes.size() + kRun - 1) / kRun;
  const auto fill = [&](size_t first, size_t step) {
    for (size_t run = first; run < runs; run += step) {
      uint64_t state = splitmix64(seed ^ splitmix64(run)) | 1;
      const size_t end = std::min(codes.size(), (run + 1) * kRun);
      for (size_t i = run * kRun; i < end; i += 8) {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17;
        std::memcpy(codes.data() + i, &state, std::min<size_t>(8, end - i));
      }
    }
  };
  const size_t threads = std::min<size_t>(runs, std::clamp(std::thread::hardware_concurrency(), 1u, 16u));
  if (threads <= 1) {
    fill(0, 1);
  } else {
    std::vector<std::thread> workers;
    for (size_t t = 0; t < threads; ++t) workers.emplace_back(fill, t, threads);
    for (std::thread& worker : workers) worker.join();
  }
  const float levels = static_cast<float>((1 << bits) - 1);
  for (int64_t row = 0; row < weight.rows; ++row) {
    for (int64_t g = 0; g < groups; ++g) host.set_scale_zero(row, g, 0.04f / levels, levels / 2);
  }
  return host;
}

}  // namespace

void upload_synthetic(kernels::Backend& backend, void* dst, int64_t n, float scale, uint64_t seed) {
  const int64_t element = dtype_size(backend.compute_dtype());
  // Generation is split over the host's cores (a 72B shard is ~10^10 values); the values depend
  // only on (seed, index), not on the split.
  const int64_t threads = std::clamp<int64_t>(std::thread::hardware_concurrency(), 1, 16);
  std::vector<float> chunk(static_cast<size_t>(std::min(n, kSyntheticChunk)));
  for (int64_t done = 0; done < n; done += kSyntheticChunk) {
    const int64_t count = std::min(kSyntheticChunk, n - done);
    const int64_t part = (count + threads - 1) / threads;
    if (count < (int64_t{1} << 16) || threads == 1) {
      fill_uniform(chunk.data(), done, count, scale, seed);
    } else {
      std::vector<std::thread> workers;
      for (int64_t begin = 0; begin < count; begin += part) {
        const int64_t size = std::min(part, count - begin);
        workers.emplace_back(fill_uniform, chunk.data() + begin, done + begin, size, scale, seed);
      }
      for (std::thread& worker : workers) worker.join();
    }
    backend.upload_f32(static_cast<char*>(dst) + done * element, chunk.data(), count);
  }
}

void WeightStore::load_synthetic(const std::vector<WeightShard>& plan, kernels::Backend& backend,
                                 uint64_t seed,
                                 const std::function<void(const LoadProgress&)>& progress,
                                 const QuantConfig& quant) {
  const int64_t element = dtype_size(backend.compute_dtype());
  LoadProgress state;
  state.weights_total = plan.size();
  for (const WeightShard& weight : plan) {
    state.bytes_total += shard_bytes(weight, quant, static_cast<int>(element));
  }
  std::vector<float> ones;
  for (size_t index = 0; index < plan.size(); ++index) {
    const WeightShard& weight = plan[index];
    if (const int bits = planned_bits(weight, quant); bits != 0) {
      store_quantized(weight, synthetic_quantized(weight, quant, bits, splitmix64(seed + index)),
                      backend, state, progress);
      continue;
    }
    DeviceBuffer buffer(backend, static_cast<size_t>(weight.numel() * element));
    int64_t real_rows = 0;  // rows past the blocks are vocab padding: zero, as load() leaves them
    for (const SourceBlock& block : weight.blocks) real_rows += block.rows.size();
    const int64_t real = real_rows * weight.cols;
    const bool is_norm = weight.name.ends_with("norm");
    if (is_norm) {
      ones.assign(static_cast<size_t>(real), 1.0f);
      backend.upload_f32(buffer.data(), ones.data(), real);
    } else {
      upload_synthetic(backend, buffer.data(), real, 0.02f, splitmix64(seed + index));
    }
    if (real < weight.numel()) {
      backend.fill_zero(static_cast<char*>(buffer.data()) + real * element,
                        static_cast<size_t>((weight.numel() - real) * element));
    }
    store(weight, std::move(buffer), state, progress);
  }
}

void WeightStore::store_quantized(const WeightShard& weight,
                                  const kernels::QuantizedHostMatrix& host,
                                  kernels::Backend& backend, LoadProgress& state,
                                  const std::function<void(const LoadProgress&)>& progress) {
  kernels::DeviceQuantizedMatrix shard(backend, host);
  const size_t bytes = shard.bytes();
  bytes_ += bytes;
  state.bytes_done += static_cast<int64_t>(bytes);
  TPS_CHECK(quantized_.emplace(weight.name, std::move(shard)).second, "duplicate weight {}",
            weight.name);
  ++state.weights_done;
  if (progress) progress(state);
}

LinearWeight WeightStore::find_linear(const std::string& name) const {
  auto it = quantized_.find(name);
  if (it != quantized_.end()) return {nullptr, &it->second.matrix()};
  return {find(name), nullptr};
}

LinearWeight WeightStore::get_linear(const std::string& name) const {
  const LinearWeight weight = find_linear(name);
  TPS_CHECK(weight.present(), "weight '{}' was not loaded", name);
  return weight;
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
