// The communicator a GPU rank uses for its device buffers: NCCL when every rank has its own GPU,
// host-staged MPI when ranks share GPUs (--allow-shared-gpu). Compiles in CPU-only builds, where
// make_gpu_communicator raises a clear error.
//
// Typical use on every rank (collective: all ranks call it in the same order):
//   NodeTopology node = node_topology();
//   GpuCommChoice choice = choose_gpu_comm(node, kernels::cuda_device_count(), allow_shared_gpu);
//   cudaSetDevice(choice.device); create the backend's stream on it;
//   auto comm = make_gpu_communicator(mpi, choice, stream, timeout);
// The GPU communicator's all_reduce_sum / all_gather / broadcast take DEVICE pointers; host-side
// control traffic (step plans, all_ok) stays on the MpiCommunicator.
#pragma once

#include <chrono>
#include <memory>

#include "parallel/communicator.h"
#include "parallel/mpi_communicator.h"
#include "parallel/topology.h"

namespace tpserve::parallel {

// Builds the communicator `choice` names, over the ranks of `mpi` (which carries NCCL's unique
// id and the host-side all_ok, and must outlive the result). Collective: every rank of `mpi`
// calls it. `stream` is the cudaStream_t the collectives are enqueued on (nullptr: the legacy
// default stream); `timeout` bounds every collective and the NCCL start-up (the watchdog).
// Raises tpserve::Error when `choice` is an error on any rank (every rank raises, none hangs),
// when the ranks' choices disagree, when a CUDA/NCCL call fails, and in builds without CUDA.
// Logs on rank 0 which path is in use and why.
std::unique_ptr<Communicator> make_gpu_communicator(MpiCommunicator& mpi,
                                                    const GpuCommChoice& choice, void* stream,
                                                    std::chrono::milliseconds timeout);

namespace detail {
// Raises tpserve::Error naming `call`, `rank` and the CUDA error when status (a cudaError_t) is
// not cudaSuccess. Only in CUDA builds; shared by the GPU communicators.
void check_cuda(int status, const char* call, int rank);
}  // namespace detail

}  // namespace tpserve::parallel
