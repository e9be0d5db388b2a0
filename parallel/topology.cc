#include "parallel/topology.h"

#include <fmt/format.h>
#include <unistd.h>

#include <climits>

#include "common/check.h"

namespace tpserve::parallel {

namespace {

void check_mpi(int status, const char* call) {
  if (status == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(status, text, &length);
  check_failed(call, __FILE__, __LINE__, std::string(text, length));
}

std::string this_hostname() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "this host";
  return name;
}

}  // namespace

NodeTopology node_topology(MPI_Comm comm) {
  int rank = 0;
  check_mpi(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
  MPI_Comm node_comm = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node_comm),
            "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)");
  NodeTopology node;
  check_mpi(MPI_Comm_rank(node_comm, &node.local_rank), "MPI_Comm_rank(node)");
  check_mpi(MPI_Comm_size(node_comm, &node.local_size), "MPI_Comm_size(node)");
  MPI_Comm_free(&node_comm);
  node.hostname = this_hostname();
  return node;
}

std::string_view gpu_comm_kind_name(GpuCommKind kind) {
  switch (kind) {
    case GpuCommKind::kNccl: return "NCCL";
    case GpuCommKind::kHostStaged: return "host-staged MPI";
  }
  return "?";
}

GpuCommChoice choose_gpu_comm(const NodeTopology& node, int device_count, bool allow_shared_gpu) {
  TPS_CHECK(node.local_size >= 1 && node.local_rank >= 0 && node.local_rank < node.local_size,
            "local rank {} of {}", node.local_rank, node.local_size);
  GpuCommChoice choice;
  if (device_count <= 0) {
    choice.error = fmt::format(
        "no CUDA device on {} (local rank {} of {}): run on a GPU node, or on CPU ranks",
        node.hostname, node.local_rank, node.local_size);
    return choice;
  }
  if (node.local_size <= device_count) {
    choice.kind = GpuCommKind::kNccl;
    choice.device = node.local_rank;
    choice.reason = fmt::format("{} rank(s) on {} and {} GPU(s): one GPU per rank, NCCL on device {}",
                                node.local_size, node.hostname, device_count, choice.device);
    return choice;
  }
  if (allow_shared_gpu) {
    choice.kind = GpuCommKind::kHostStaged;
    choice.device = node.local_rank % device_count;
    choice.reason = fmt::format(
        "{} ranks on {} share {} GPU(s) (--allow-shared-gpu): collectives staged through host "
        "memory over MPI (slow; for testing), this rank on device {}",
        node.local_size, node.hostname, device_count, choice.device);
    return choice;
  }
  choice.error = fmt::format(
      "{} ranks on {} share {} GPU(s); NCCL needs one GPU per rank — run with at most {} ranks per "
      "node, or pass --allow-shared-gpu to stage collectives through host memory over MPI (slow; "
      "for testing)",
      node.local_size, node.hostname, device_count, device_count);
  return choice;
}

}  // namespace tpserve::parallel
