#include "launch/bench_gemv.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "common/error.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/quantized_kernels.h"
#include "kernels/quantized_host.h"

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

}  // namespace

int run_gemv_bench(const GemvBenchOptions& options) {
  int64_t out = 0, in = 0;
  if (std::sscanf(options.shape.c_str(), "%ldx%ld", &out, &in) != 2 || out <= 0 || in <= 0 ||
      out > (1 << 20) || in > (1 << 20)) {
    raise(ErrorCode::kInvalidArgument, "--gemv '{}': expected OUTxIN, e.g. 11008x4096", options.shape);
  }
  if ((options.bits != 4 && options.bits != 8) || options.group_size <= 0 ||
      in % options.group_size != 0 || options.group_size % 2 != 0) {
    raise(ErrorCode::kInvalidArgument, "--gemv-bits {} / --gemv-group {}: bits 4 or 8, an even "
          "group size that divides {}", options.bits, options.group_size, in);
  }
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
