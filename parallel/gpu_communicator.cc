#include "parallel/gpu_communicator.h"

#include "common/error.h"
#include "common/log.h"

#if TPSERVE_HAVE_CUDA
#include <cuda_runtime.h>

#include "parallel/host_staged_communicator.h"
#include "parallel/nccl_communicator.h"
#endif

namespace tpserve::parallel {

#if TPSERVE_HAVE_CUDA

void detail::check_cuda(int status, const char* call, int rank) {
  if (status == cudaSuccess) return;
  const auto error = static_cast<cudaError_t>(status);
  cudaGetLastError();  // clear the non-sticky error so later launch checks do not report it again
  raise(ErrorCode::kInternal, "{} failed on rank {}: {}: {}", call, rank, cudaGetErrorName(error),
        cudaGetErrorString(error));
}

std::unique_ptr<Communicator> make_gpu_communicator(MpiCommunicator& mpi,
                                                    const GpuCommChoice& choice, void* stream,
                                                    std::chrono::milliseconds timeout) {
  // Every rank learns whether every rank has a path, and whether all took the same one, before
  // any of them enters NCCL start-up: a rank that cannot go on makes all of them raise.
  if (!mpi.all_ok(choice.ok())) {
    if (!choice.ok()) raise(ErrorCode::kUnavailable, "rank {}: {}", mpi.rank(), choice.error);
    raise(ErrorCode::kUnavailable,
          "rank {}: another rank found no usable GPU path (see its log line)", mpi.rank());
  }
  const bool all_nccl = mpi.all_ok(choice.kind == GpuCommKind::kNccl);
  const bool all_staged = mpi.all_ok(choice.kind == GpuCommKind::kHostStaged);
  if (!all_nccl && !all_staged) {
    raise(ErrorCode::kUnavailable,
          "rank {}: ranks disagree on the GPU communicator (this rank: {}, because {}); nodes "
          "differ in ranks per GPU — give every node at most one rank per GPU, or pass "
          "--allow-shared-gpu so every rank stages through host memory",
          mpi.rank(), gpu_comm_kind_name(choice.kind), choice.reason);
  }
  if (choice.kind == GpuCommKind::kNccl) {
    log().info("GPU collectives: NCCL — {}", choice.reason);
    return std::make_unique<NcclCommunicator>(mpi, choice.device, stream, timeout);
  }
  if (mpi.rank() == 0) log().warn("GPU collectives: host-staged MPI — {}", choice.reason);
  return std::make_unique<HostStagedCommunicator>(mpi, choice.device, stream);
}

#else  // !TPSERVE_HAVE_CUDA

void detail::check_cuda(int status, const char* call, int rank) {
  if (status == 0) return;
  raise(ErrorCode::kInternal, "{} failed on rank {} (CUDA error {})", call, rank, status);
}

std::unique_ptr<Communicator> make_gpu_communicator(MpiCommunicator& mpi,
                                                    const GpuCommChoice& /*choice*/,
                                                    void* /*stream*/,
                                                    std::chrono::milliseconds /*timeout*/) {
  raise(ErrorCode::kUnimplemented,
        "rank {}: this tpserve was built without CUDA (TPSERVE_HAVE_CUDA off), so it has no GPU "
        "communicator; rebuild where the CUDA toolkit and NCCL are installed, or run on CPU ranks",
        mpi.rank());
}

#endif

}  // namespace tpserve::parallel
