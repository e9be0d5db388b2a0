// Where this rank sits: its node, its rank among the node's ranks, and which GPU communicator
// path (and device) follows from that. The decision is a pure function so every branch and every
// error line is unit-tested without MPI or a GPU.
#pragma once

#include <mpi.h>

#include <string>
#include <string_view>

namespace tpserve::parallel {

struct NodeTopology {
  int local_rank = 0;  // rank among the processes of this node
  int local_size = 1;  // processes of the job on this node
  std::string hostname;
};

// Collective over `comm`: splits it by shared memory (MPI_COMM_TYPE_SHARED), so every rank must
// call it. The hostname comes from gethostname().
NodeTopology node_topology(MPI_Comm comm = MPI_COMM_WORLD);

enum class GpuCommKind {
  kNccl,        // one GPU per rank, collectives on device memory through NCCL
  kHostStaged,  // ranks share GPUs: device -> pinned host -> MPI -> device (slow; for testing)
};

std::string_view gpu_comm_kind_name(GpuCommKind kind);

struct GpuCommChoice {
  GpuCommKind kind = GpuCommKind::kNccl;
  int device = -1;     // the CUDA device this rank uses (valid only when ok())
  std::string reason;  // one line, why this path: the factory logs it
  std::string error;   // non-empty: no GPU path for this rank; says why and what to do instead
  bool ok() const { return error.empty(); }
};

// The GPU communicator path for rank `node.local_rank` given the CUDA devices it sees:
//   no device                          -> error "no CUDA device on HOST ..."
//   local_size <= device_count         -> NCCL, device = local_rank
//   more ranks than GPUs, shared ok    -> host-staged, device = local_rank % device_count
//   more ranks than GPUs, not allowed  -> error naming both numbers and --allow-shared-gpu
// NCCL refuses two ranks on one GPU ("Duplicate GPU detected"), hence the host-staged fallback.
GpuCommChoice choose_gpu_comm(const NodeTopology& node, int device_count, bool allow_shared_gpu);

}  // namespace tpserve::parallel
