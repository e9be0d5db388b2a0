// `tpserve bench --gemv OUTxIN`: the CPU's quantized decode GEMV (batch 1) against the float32
// GEMV OpenBLAS runs on the same matrix dequantized, in one run: achieved bytes/s on the bytes each
// reads (packed codes + scales + mins, or the float32 matrix) and the step-time ratio.
#pragma once

#include <string>

namespace tpserve::launch {

struct GemvBenchOptions {
  std::string shape;  // "OUTxIN", e.g. 11008x4096
  int bits = 4;
  int group_size = 128;
  int iters = 20;
};

int run_gemv_bench(const GemvBenchOptions& options);

}  // namespace tpserve::launch
