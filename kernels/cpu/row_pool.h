// Splitting a decode GEMV's output rows over the CPU backend's threads: as many as OpenBLAS is
// configured for (launch/rank_setup.cc: the cores over the ranks on this host, or
// OPENBLAS_NUM_THREADS), so the quantized GEMV uses the same threads the float GEMM does.
//
// A decode step runs a few hundred short GEMVs (tens of microseconds each at 135M parameters), so
// waking a sleeping thread per call would cost as much as the work: the workers spin on a
// generation counter for a while after each job (as ggml's thread pool does) and only then sleep.
#pragma once

#include <cstdint>
#include <functional>

namespace tpserve::kernels::cpu {

// Calls part(begin, end) over [0, n) cut into at most threads() pieces whose boundaries are
// multiples of `align`, in parallel; the calling thread runs the first piece. Returns when every
// piece is done. With one thread (or n too small to share) it is a plain call.
void parallel_rows(int64_t n, int64_t align, const std::function<void(int64_t, int64_t)>& part);

// The threads parallel_rows uses now (>= 1).
int row_threads();

}  // namespace tpserve::kernels::cpu
