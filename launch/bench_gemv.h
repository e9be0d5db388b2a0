// `tpserve bench --gemv OUTxIN[,OUTxIN...]`: the quantized linear against the float one on the
// same matrix dequantized, in one run, with the achieved bytes/s on the bytes each reads (packed
// codes + scales + mins + x + out, or the float matrix + x + out):
//   --device cpu: the CPU's decode GEMV (batch 1) against OpenBLAS's float32 GEMV;
//   --device cuda: quantized_linear at each of --gemv-tokens (e.g. 1,4,16,64) against cuBLASLt in
//     the compute dtype, and both against the device-to-device copy bandwidth measured in the
//     same run. Each timed loop cycles over enough copies of the matrix to exceed the L2 cache
//     several times over, so the bytes come from memory. The bandwidths are of the kernels alone
//     (the calls captured in a CUDA graph and replayed); the eager times, launched one by one as
//     a model step launches them today, are printed beside them.
#pragma once

#include <string>

namespace tpserve::launch {

struct GemvBenchOptions {
  std::string shape;  // "OUTxIN", e.g. 11008x4096; cuda: a comma-separated list
  int bits = 4;
  int group_size = 128;
  int iters = 20;
  std::string device = "cpu";
  std::string dtype;              // cuda: bf16 (default) or fp16
  std::string tokens = "1";       // cuda: rows of x, comma-separated
  std::string json_path;          // cuda: the table as JSON
};

int run_gemv_bench(const GemvBenchOptions& options);

}  // namespace tpserve::launch
