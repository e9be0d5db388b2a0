// `tpserve bench --load DIR`: how fast each rank loads its shard of a checkpoint, against the
// bandwidths that bound it, measured in the same run (launch/bench_load.cc).
#pragma once

#include <string>

namespace tpserve::launch {

struct LoadBenchOptions {
  std::string model_dir;
  std::string device = "cpu";  // cpu | cuda
  std::string dtype;           // cuda: bf16 (default) | fp16
  int threads = 0;             // 0: default_load_threads()
  std::string json_path;
};

// Under mpirun, every rank loads its shard at TP = the job's size. Returns the exit status.
int run_load_bench(const LoadBenchOptions& options);

}  // namespace tpserve::launch
