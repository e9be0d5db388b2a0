#include "launch/bench_gemv.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <vector>

#include "common/error.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/quantized_kernels.h"
#include "kernels/cuda_backend.h"
#include "kernels/quantized_device.h"
#include "kernels/quantized_host.h"
#include "launch/model_source.h"

namespace tpserve::launch {

namespace {

// The best of `iters` timings of f, in seconds (the least disturbed by other processes).
template <typename F>
double best_seconds(int iters, F f) {
  double best = 1e30;
  for (int i = 0; i < iters; ++i) {
    const auto start = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

struct GemvShape {
  int64_t out = 0, in = 0;
};

GemvShape parse_shape(const std::string& text, const GemvBenchOptions& options) {
  GemvShape s;
  if (std::sscanf(text.c_str(), "%ldx%ld", &s.out, &s.in) != 2 || s.out <= 0 || s.in <= 0 ||
      s.out > (1 << 20) || s.in > (1 << 20)) {
    raise(ErrorCode::kInvalidArgument, "--gemv '{}': expected OUTxIN, e.g. 11008x4096", text);
  }
  if ((options.bits != 4 && options.bits != 8) || options.group_size <= 0 ||
      s.in % options.group_size != 0 || options.group_size % 2 != 0) {
    raise(ErrorCode::kInvalidArgument, "--gemv-bits {} / --gemv-group {}: bits 4 or 8, an even "
          "group size that divides {}", options.bits, options.group_size, s.in);
  }
  return s;
}

// Random codes, every group's scale and zero spanning [-0.02, 0.02] (as bench's synthetic weights).
kernels::QuantizedHostMatrix random_quantized(const GemvShape& s, int bits, int64_t group_size) {
  const int64_t groups = s.in / group_size;
  kernels::QuantizedHostMatrix matrix(bits, s.out, s.in, group_size, groups);
  std::vector<uint8_t>& codes = matrix.code_bytes();
  uint64_t state = 0x9E3779B97F4A7C15ull;
  for (size_t i = 0; i < codes.size(); i += 8) {
    state ^= state << 13; state ^= state >> 7; state ^= state << 17;
    std::memcpy(codes.data() + i, &state, std::min<size_t>(8, codes.size() - i));
  }
  const float levels = static_cast<float>((1 << bits) - 1);
  for (int64_t r = 0; r < s.out; ++r) {
    for (int64_t g = 0; g < groups; ++g) matrix.set_scale_zero(r, g, 0.04f / levels, levels / 2);
  }
  return matrix;
}

// Mean seconds per call of f(copy) over `iters` calls cycling through `copies`, after a warm-up.
template <typename F>
double device_seconds(kernels::Backend& backend, int copies, int iters, F f) {
  for (int i = 0; i < copies; ++i) f(i);
  backend.synchronize();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) f(i % copies);
  backend.synchronize();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / iters;
}

int run_gemv_bench_cuda(const GemvBenchOptions& options) {
  // Every flag is checked before any device is looked for.
  const std::string dtype_text = options.dtype.empty() ? "bf16" : options.dtype;
  const DType dtype = dtype_text == "fp16" ? DType::kF16 : DType::kBF16;
  if (dtype_text != "bf16" && dtype_text != "fp16") {
    raise(ErrorCode::kInvalidArgument, "--dtype '{}': the cuda GEMV bench runs bf16 or fp16",
          dtype_text);
  }
  const std::vector<int> tokens = parse_int_list(options.tokens, "--gemv-tokens");
  for (int m : tokens) {
    if (m < 1 || m > 8192) raise(ErrorCode::kInvalidArgument, "--gemv-tokens: {} is not in 1..8192", m);
  }
  std::vector<GemvShape> shapes;
  for (size_t begin = 0; begin <= options.shape.size();) {
    const size_t end = std::min(options.shape.find(',', begin), options.shape.size());
    shapes.push_back(parse_shape(options.shape.substr(begin, end - begin), options));
    begin = end + 1;
  }
  if (kernels::cuda_device_count() == 0) {
    raise(ErrorCode::kUnavailable, "--gemv --device cuda: no CUDA device found (or tpserve was "
          "built without CUDA)");
  }
  auto backend = kernels::make_cuda_backend(0, dtype);
  const double copy_gbps = kernels::cuda_copy_bandwidth_gbps(0, size_t{1} << 30);
  const int64_t element = dtype_size(dtype);
  constexpr double kColdBytes = 512e6;  // cycled through per timed loop: ~10x an H100/H200's L2
  fmt::print("quantized linear ({}-bit, group {}) vs cuBLASLt {} on the same matrix dequantized; "
             "device copy bandwidth {:.0f} GB/s (same run); mean of {} calls over L2-cold copies, "
             "kernel time from a CUDA graph (eager us: launched one by one, host costs included)\n",
             options.bits, options.group_size, dtype_text, copy_gbps, options.iters);
  fmt::print("{:>12} {:>5} {:>10} {:>9} {:>7} {:>10} {:>9} {:>7} {:>8} {:>9} {:>9}\n", "OUTxIN",
             "M", "quant us", "GB/s", "of copy", "dense us", "GB/s", "of copy", "speedup",
             "q eager", "d eager");
  nlohmann::json rows = nlohmann::json::array();
  for (const GemvShape& s : shapes) {
    const kernels::QuantizedHostMatrix host = random_quantized(s, options.bits, options.group_size);
    const double quant_weight_bytes = static_cast<double>(host.codes().size()) +
                                      2.0 * element * static_cast<double>(s.out * host.num_groups());
    const double dense_weight_bytes = static_cast<double>(element * s.out * s.in);
    const int quant_copies = static_cast<int>(std::ceil(kColdBytes / quant_weight_bytes));
    const int dense_copies = static_cast<int>(std::ceil(kColdBytes / dense_weight_bytes));
    std::vector<kernels::DeviceQuantizedMatrix> quantized;
    for (int i = 0; i < quant_copies; ++i) quantized.emplace_back(*backend, host);
    std::vector<void*> dense;
    {
      const std::vector<float> values = host.dequantize();
      for (int i = 0; i < dense_copies; ++i) {
        dense.push_back(backend->allocate(static_cast<size_t>(dense_weight_bytes)));
        backend->upload_f32(dense.back(), values.data(), static_cast<int64_t>(values.size()));
      }
    }
    const int most_tokens = *std::max_element(tokens.begin(), tokens.end());
    void* x = backend->allocate(static_cast<size_t>(most_tokens * s.in * element));
    void* y = backend->allocate(static_cast<size_t>(most_tokens * s.out * element));
    backend->fill_zero(x, static_cast<size_t>(most_tokens * s.in * element));
    for (int m : tokens) {
      const double io_bytes = static_cast<double>(element) * m * (s.in + s.out);
      const auto quant_call = [&](int i) {
        backend->quantized_linear(x, quantized[i % quant_copies].matrix(), nullptr, m, y);
      };
      const auto dense_call = [&](int i) {
        backend->linear(x, dense[i % dense_copies], nullptr, m, s.out, s.in, y);
      };
      // Eager: as a model step calls them (host launch costs included); graph: the kernels alone.
      const double quant_eager_s = device_seconds(*backend, quant_copies, options.iters, quant_call);
      const double dense_eager_s = device_seconds(*backend, dense_copies, options.iters, dense_call);
      const double quant_s = kernels::cuda_graph_seconds(*backend, options.iters, quant_call);
      const double dense_s = kernels::cuda_graph_seconds(*backend, options.iters, dense_call);
      const double quant_gbps = (quant_weight_bytes + io_bytes) / quant_s / 1e9;
      const double dense_gbps = (dense_weight_bytes + io_bytes) / dense_s / 1e9;
      fmt::print("{:>12} {:>5} {:>10.2f} {:>9.0f} {:>7.3f} {:>10.2f} {:>9.0f} {:>7.3f} {:>7.2f}x "
                 "{:>9.2f} {:>9.2f}\n",
                 fmt::format("{}x{}", s.out, s.in), m, quant_s * 1e6, quant_gbps,
                 quant_gbps / copy_gbps, dense_s * 1e6, dense_gbps, dense_gbps / copy_gbps,
                 dense_s / quant_s, quant_eager_s * 1e6, dense_eager_s * 1e6);
      rows.push_back({{"out", s.out}, {"in", s.in}, {"tokens", m}, {"bits", options.bits},
                      {"group_size", options.group_size}, {"dtype", dtype_text},
                      {"quantized_us", quant_s * 1e6}, {"quantized_gbps", quant_gbps},
                      {"quantized_fraction_of_copy", quant_gbps / copy_gbps},
                      {"dense_us", dense_s * 1e6}, {"dense_gbps", dense_gbps},
                      {"dense_fraction_of_copy", dense_gbps / copy_gbps},
                      {"speedup", dense_s / quant_s}, {"copy_gbps", copy_gbps},
                      {"quantized_eager_us", quant_eager_s * 1e6},
                      {"dense_eager_us", dense_eager_s * 1e6}});
    }
    backend->release(x);
    backend->release(y);
    for (void* d : dense) backend->release(d);
  }
  if (!options.json_path.empty()) {
    std::ofstream file(options.json_path);
    file << rows.dump(2) << "\n";
    if (!file) raise(ErrorCode::kInvalidArgument, "--json: cannot write {}", options.json_path);
  }
  return 0;
}

}  // namespace

int run_gemv_bench(const GemvBenchOptions& options) {
  if (options.device == "cuda") return run_gemv_bench_cuda(options);
  if (options.device != "cpu") {
    raise(ErrorCode::kInvalidArgument, "--device: '{}' is not cpu or cuda", options.device);
  }
  const auto [out, in] = parse_shape(options.shape, options);
  const int64_t groups = in / options.group_size;
  kernels::QuantizedHostMatrix matrix(options.bits, out, in, options.group_size, groups);
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> code(0, (1u << options.bits) - 1);
  for (int64_t r = 0; r < out; ++r) {
    for (int64_t c = 0; c < in; ++c) matrix.set_code(r, c, code(rng));
    for (int64_t g = 0; g < groups; ++g) matrix.set_scale_zero(r, g, 0.01f, 8.0f);
  }
  const std::vector<float> dense = matrix.dequantize();
  std::vector<float> x(static_cast<size_t>(in), 0.5f);
  std::vector<float> y(static_cast<size_t>(out));
  const kernels::QuantizedMatrix view = matrix.view();

  const double quantized_s = best_seconds(options.iters, [&] {
    kernels::cpu::quantized_linear(x.data(), view, nullptr, 1, y.data());
  });
  const double dense_s = best_seconds(options.iters, [&] {
    kernels::cpu::linear(x.data(), dense.data(), nullptr, 1, out, in, y.data());
  });
  const double quantized_bytes = static_cast<double>(matrix.codes().size()) +
                                 8.0 * static_cast<double>(out * groups) + 4.0 * static_cast<double>(in + out);
  const double dense_bytes = 4.0 * static_cast<double>(out * in + in + out);
  fmt::print("gemv {}x{} batch 1, {}-bit group {} ({} kernels) vs f32 (OpenBLAS), best of {}:\n",
             out, in, options.bits, options.group_size,
             kernels::cpu::best_quantized_kernels().name, options.iters);
  fmt::print("  quantized  {:8.3f} ms  {:7.2f} GB/s on {:.1f} MB read\n", quantized_s * 1e3,
             quantized_bytes / quantized_s / 1e9, quantized_bytes / 1e6);
  fmt::print("  f32        {:8.3f} ms  {:7.2f} GB/s on {:.1f} MB read\n", dense_s * 1e3,
             dense_bytes / dense_s / 1e9, dense_bytes / 1e6);
  fmt::print("  quantized / f32 step time: {:.3f} (bytes read ratio {:.3f})\n", quantized_s / dense_s,
             quantized_bytes / dense_bytes);
  return 0;
}

}  // namespace tpserve::launch
