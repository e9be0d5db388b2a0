// `tpserve bench --load DIR` under `mpirun -np N`: every rank loads its TP=N shard of the checkpoint
// in DIR (the same WeightStore::load that serve runs, without the KV cache and workspace), all
// ranks at once, then measures on the same ranks, again all at once:
//   - page-cache read: the same threads pread the rank's share of the checkpoint files (as many
//     bytes as its load read) in 8 MiB reads into reused buffers -- the read half of a load;
//   - memory copy: the same threads memcpy 256 MiB each way (bytes copied per second, i.e. the
//     destination's bytes, the unit of "GB/s of checkpoint" too);
//   - fresh-memory write: memset of 256 MiB never touched before (what filling new weights costs;
//     compared with the load's output rate, the shard's bytes in the compute dtype per second);
//   - on a GPU, the pinned host-to-device copy bandwidth (one 256 MiB cudaMemcpy from pinned memory).
// Per rank it reports the load's GB/s of checkpoint bytes and its ratio to those, the peak RSS
// (VmHWM, reset before the load through /proc/self/clear_refs) against the shard's bytes in the
// compute dtype, and the bytes the load read (/proc/self/io: rchar counts page-cache reads too,
// read_bytes only what came from the disk) against the shard's bytes in the file.
#include "launch/bench_load.h"

#include <fcntl.h>
#include <mpi.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <vector>

#include "common/error.h"
#include "kernels/cuda_backend.h"
#include "kernels/ops.h"
#include "parallel/mpi_communicator.h"
#include "runtime/families/architecture.h"
#include "runtime/model/checkpoint_source.h"
#include "runtime/model/shard_loader.h"
#include "runtime/model/weight_plan.h"
#include "runtime/model/weights.h"

namespace tpserve::launch {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A field of /proc/self/status in bytes ("VmHWM:   123 kB"), or of /proc/self/io ("rchar: 123").
int64_t proc_field(const char* file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) != 0) continue;
    std::istringstream fields(line.substr(key.size() + 1));
    int64_t value = 0;
    std::string unit;
    fields >> value >> unit;
    return unit == "kB" ? value * 1024 : value;
  }
  return -1;  // not available (no /proc/self/io without task I/O accounting)
}

// Runs fn(thread) on `threads` threads (the caller's being thread 0).
template <typename Fn>
void on_threads(int threads, Fn fn) {
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(fn, t);
  fn(0);
  for (std::thread& thread : pool) thread.join();
}

// `bytes` of the checkpoint's files (front to back, file after file, from this rank's starting
// file so ranks do not all read the same pages) by `threads` threads in preads of the load's chunk
// size. GB/s.
double page_cache_read_gbps(const std::vector<std::string>& files, int64_t bytes, int threads,
                            int rank) {
  const int64_t chunk = runtime::load_chunk_bytes();
  struct Span {
    int fd;
    int64_t offset, length;
  };
  std::vector<int> fds;
  std::vector<Span> spans;
  int64_t planned = 0;
  for (size_t i = 0; i < files.size() && planned < bytes; ++i) {
    const std::string& path = files[(i + static_cast<size_t>(rank)) % files.size()];
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) raise(ErrorCode::kNotFound, "{}: cannot open: {}", path, std::strerror(errno));
    fds.push_back(fd);
    const int64_t size = ::lseek(fd, 0, SEEK_END);
    for (int64_t offset = 0; offset < size && planned < bytes; offset += chunk) {
      const int64_t length = std::min({chunk, size - offset, bytes - planned});
      spans.push_back({fd, offset, length});
      planned += length;
    }
  }
  std::atomic<size_t> next{0};
  MPI_Barrier(MPI_COMM_WORLD);
  const auto start = Clock::now();
  on_threads(threads, [&](int) {
    std::vector<char> buffer(static_cast<size_t>(chunk));
    for (size_t i = next++; i < spans.size(); i = next++) {
      int64_t done = 0;
      while (done < spans[i].length) {
        const ssize_t got = ::pread(spans[i].fd, buffer.data(), spans[i].length - done,
                                    spans[i].offset + done);
        if (got <= 0) break;
        done += got;
      }
    }
  });
  const double seconds = seconds_since(start);
  for (int fd : fds) ::close(fd);
  return static_cast<double>(planned) / seconds / 1e9;
}

// memcpy of `bytes` split over `threads` threads, after one untimed pass: destination bytes per s.
double memory_copy_gbps(size_t bytes, int threads) {
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  const size_t part = (bytes + static_cast<size_t>(threads) - 1) / static_cast<size_t>(threads);
  const auto copy = [&](int t) {
    const size_t begin = std::min(bytes, part * static_cast<size_t>(t));
    const size_t end = std::min(bytes, begin + part);
    std::memcpy(dst.data() + begin, src.data() + begin, end - begin);
  };
  on_threads(threads, copy);
  MPI_Barrier(MPI_COMM_WORLD);
  double best = 0;
  for (int i = 0; i < 3; ++i) {
    const auto start = Clock::now();
    on_threads(threads, copy);
    best = std::max(best, static_cast<double>(bytes) / seconds_since(start) / 1e9);
  }
  return best;
}

// memset of `bytes` of memory never touched before (fresh anonymous pages, asked for huge pages as
// the CPU backend asks), split over `threads` threads: bytes written per second. A load fills its
// weights' fresh memory, so this bounds it too: on a virtual machine the first touch of a page can
// cost far more than a memcpy into warm memory.
double fresh_memory_gbps(size_t bytes, int threads) {
  void* memory = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) raise(ErrorCode::kResourceExhausted, "mmap of {} bytes failed", bytes);
  (void)::madvise(memory, bytes, MADV_HUGEPAGE);
  char* data = static_cast<char*>(memory);
  const size_t part = (bytes + static_cast<size_t>(threads) - 1) / static_cast<size_t>(threads);
  MPI_Barrier(MPI_COMM_WORLD);
  const auto start = Clock::now();
  on_threads(threads, [&](int t) {
    const size_t begin = std::min(bytes, part * static_cast<size_t>(t));
    std::memset(data + begin, 1, std::min(bytes, begin + part) - begin);
  });
  const double gbps = static_cast<double>(bytes) / seconds_since(start) / 1e9;
  ::munmap(memory, bytes);
  return gbps;
}

// One cudaMemcpy from pinned host memory to the device, best of 3: GB/s.
double pinned_h2d_gbps(kernels::Backend& backend, size_t bytes) {
  void* host = backend.allocate_host(bytes);
  void* device = backend.allocate(bytes);
  std::memset(host, 1, bytes);
  double best = 0;
  for (int i = 0; i < 4; ++i) {
    const auto start = Clock::now();
    backend.copy_to_device(device, host, bytes);
    if (i > 0) best = std::max(best, static_cast<double>(bytes) / seconds_since(start) / 1e9);
  }
  backend.release(device);
  backend.release_host(host);
  return best;
}

}  // namespace

int run_load_bench(const LoadBenchOptions& options) {
  parallel::MpiSession session;
  const int rank = session.rank();
  const int tp = session.size();
  std::unique_ptr<kernels::Backend> backend;
  if (options.device == "cuda") {
    if (kernels::cuda_device_count() == 0) {
      raise(ErrorCode::kUnavailable, "--device cuda: no CUDA device found (or tpserve was built "
            "without CUDA); use --device cpu");
    }
    backend = kernels::make_cuda_backend(session.local_rank() % kernels::cuda_device_count(),
                                         options.dtype == "fp16" ? DType::kF16 : DType::kBF16);
  } else if (options.device == "cpu") {
    backend = kernels::make_cpu_backend();
  } else {
    raise(ErrorCode::kInvalidArgument, "--device: '{}' is not cpu or cuda", options.device);
  }
  const int threads = options.threads > 0 ? options.threads : runtime::default_load_threads();

  const runtime::ModelConfig config = runtime::read_model_config(options.model_dir);
  const runtime::Architecture* architecture = runtime::find_architecture(config.architecture);
  if (architecture == nullptr) {
    raise(ErrorCode::kInvalidArgument, "{}: no adapter for {}", options.model_dir,
          config.architecture);
  }
  const std::vector<runtime::WeightShard> plan =
      runtime::plan_weights(config, *architecture, runtime::rank_shape(config, tp, rank));
  auto checkpoint = runtime::open_checkpoint(config);
  // The shard's bytes in the file and in the compute dtype.
  int64_t file_bytes = 0, shard_bytes = 0;
  const int element = dtype_size(backend->compute_dtype());
  std::vector<std::string> files;
  for (const runtime::WeightShard& weight : plan) {
    shard_bytes += weight.numel() * element;
    for (const runtime::SourceBlock& block : weight.blocks) {
      file_bytes += block.rows.size() * block.cols.size() *
                    dtype_size(checkpoint->tensor(block.tensor).dtype);
      const std::string path = checkpoint->path_of(block.tensor).string();
      if (std::find(files.begin(), files.end(), path) == files.end()) files.push_back(path);
    }
  }

  {  // Reset the peak RSS to the current RSS, so VmHWM is the load's peak.
    std::ofstream clear("/proc/self/clear_refs");
    clear << "5";
  }
  const int64_t rss_before = proc_field("/proc/self/status", "VmRSS");
  const int64_t rchar_before = proc_field("/proc/self/io", "rchar");
  const int64_t disk_before = proc_field("/proc/self/io", "read_bytes");
  runtime::WeightStore weights;
  MPI_Barrier(MPI_COMM_WORLD);
  const auto start = Clock::now();
  weights.load(*checkpoint, plan, *backend, {}, nullptr, config.quant, threads);
  const double load_s = seconds_since(start);
  MPI_Barrier(MPI_COMM_WORLD);
  const double all_s = seconds_since(start);
  const int64_t peak_rss = proc_field("/proc/self/status", "VmHWM");
  const int64_t rchar = proc_field("/proc/self/io", "rchar") - rchar_before;
  const int64_t disk = proc_field("/proc/self/io", "read_bytes") - disk_before;
  const auto read = static_cast<int64_t>(checkpoint->bytes_read());

  const double cache_gbps = page_cache_read_gbps(files, read, threads, rank);
  const double copy_gbps = memory_copy_gbps(size_t{256} << 20, threads);
  const double fresh_gbps = fresh_memory_gbps(size_t{256} << 20, threads);
  const double h2d_gbps = options.device == "cuda" ? pinned_h2d_gbps(*backend, size_t{256} << 20) : 0;
  const double load_gbps = static_cast<double>(read) / load_s / 1e9;

  constexpr int kFields = 14;
  const double mine[kFields] = {load_s, load_gbps, cache_gbps, copy_gbps, h2d_gbps,
                                static_cast<double>(read), static_cast<double>(file_bytes),
                                static_cast<double>(shard_bytes), static_cast<double>(rss_before),
                                static_cast<double>(peak_rss), static_cast<double>(rchar),
                                static_cast<double>(disk), all_s, fresh_gbps};
  std::vector<double> all(static_cast<size_t>(kFields * tp));
  MPI_Gather(mine, kFields, MPI_DOUBLE, all.data(), kFields, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  if (rank != 0) return 0;

  const double gib = 1024.0 * 1024.0 * 1024.0;
  std::printf("load bench: %s, tp %d, %s %s, %d load threads per rank, %lld MiB chunks, %u cores on "
              "this host\n", options.model_dir.c_str(), tp, options.device.c_str(),
              std::string(dtype_name(backend->compute_dtype())).c_str(), threads,
              static_cast<long long>(runtime::load_chunk_bytes() >> 20),
              std::thread::hardware_concurrency());
  std::printf("rank  load_s  load_GB/s  cache_GB/s  copy_GB/s%s  load/copy  load/cache%s  "
              "out_GB/s  fresh_GB/s  out/fresh  shard_GiB  rss_base_GiB  peak_rss_GiB  "
              "(peak-base)/shard  file_GiB  rchar/file  disk/file\n",
              options.device == "cuda" ? "  h2d_GB/s" : "", options.device == "cuda" ? "  load/min(cache,h2d)" : "");
  nlohmann::json ranks = nlohmann::json::array();
  double slowest = 0, total_read = 0;
  for (int r = 0; r < tp; ++r) {
    const double* f = all.data() + r * kFields;
    const double roof = options.device == "cuda" ? std::min(f[2], f[4]) : f[2];
    std::printf("%4d  %6.3f  %9.2f  %10.2f  %9.2f", r, f[0], f[1], f[2], f[3]);
    if (options.device == "cuda") std::printf("  %8.2f", f[4]);
    std::printf("  %9.2f  %10.2f", f[1] / f[3], f[1] / f[2]);
    if (options.device == "cuda") std::printf("  %19.2f", f[1] / roof);
    const double out_gbps = f[7] / f[0] / 1e9;
    std::printf("  %8.2f  %10.2f  %9.2f", out_gbps, f[13], out_gbps / f[13]);
    std::printf("  %9.3f  %12.3f  %12.3f  %16.2f  %8.3f  %10.2f  %9s\n", f[7] / gib, f[8] / gib,
                f[9] / gib, (f[9] - f[8]) / f[7], f[6] / gib, f[10] / f[6],
                f[11] < 0 ? "n/a" : fmt::format("{:.2f}", f[11] / f[6]).c_str());
    slowest = std::max(slowest, f[12]);
    total_read += f[5];
    ranks.push_back({{"rank", r}, {"load_s", f[0]}, {"load_gbps", f[1]},
                     {"page_cache_read_gbps", f[2]}, {"memory_copy_gbps", f[3]},
                     {"pinned_h2d_gbps", f[4]}, {"fresh_memory_write_gbps", f[13]},
                     {"shard_gbps", f[7] / f[0] / 1e9}, {"bytes_read", f[5]}, {"shard_file_bytes", f[6]},
                     {"shard_bytes", f[7]}, {"rss_before_bytes", f[8]}, {"peak_rss_bytes", f[9]},
                     {"rchar", f[10]}, {"disk_read_bytes", f[11]}});
  }
  std::printf("all ranks: %.3f s, %.2f GB/s of checkpoint together\n", slowest,
              total_read / slowest / 1e9);
  if (!options.json_path.empty()) {
    std::ofstream out(options.json_path);
    if (!out) raise(ErrorCode::kInvalidArgument, "--json: cannot write {}", options.json_path);
    out << nlohmann::json{{"model", options.model_dir}, {"tp", tp}, {"device", options.device},
                          {"dtype", std::string(dtype_name(backend->compute_dtype()))},
                          {"threads", threads}, {"chunk_bytes", runtime::load_chunk_bytes()},
                          {"cores", std::thread::hardware_concurrency()},
                          {"all_ranks_s", slowest}, {"ranks", ranks}}
               .dump(1)
        << "\n";
  }
  return 0;
}

}  // namespace tpserve::launch
