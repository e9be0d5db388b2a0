#include "runtime/model/local_shard_communicator.h"

#include "common/check.h"

namespace tpserve::runtime {

LocalShardCommunicator::LocalShardCommunicator(int rank, int size, kernels::Backend& backend)
    : rank_(rank), size_(size), backend_(backend), row_zero_(backend, sizeof(int32_t)) {
  TPS_CHECK(size > 0 && rank >= 0 && rank < size, "rank {} of {}", rank, size);
  const int32_t zero = 0;
  backend_.copy_to_device(row_zero_.data(), &zero, sizeof(zero));
}

void LocalShardCommunicator::all_reduce_sum(void*, size_t, DType) {
  // No peers: this rank's partial sum stands in for the total.
}

void LocalShardCommunicator::all_gather(const void* send, size_t count, DType dtype, void* recv) {
  // The backend has no plain device-to-device copy; copy_rows of one row of `count` elements is
  // one (it moves compute-dtype elements, so the gathered dtype must be that).
  TPS_CHECK(dtype == backend_.compute_dtype(), "all_gather of {} on a {} backend",
            dtype_name(dtype), dtype_name(backend_.compute_dtype()));
  const size_t bytes = count * static_cast<size_t>(dtype_size(dtype));
  for (int slot = 0; slot < size_; ++slot) {
    backend_.copy_rows(send, row_zero_.as<int32_t>(), 1, static_cast<int64_t>(count),
                       static_cast<char*>(recv) + static_cast<size_t>(slot) * bytes);
  }
}

void LocalShardCommunicator::broadcast(void*, size_t, int root) {
  TPS_CHECK(root >= 0 && root < size_, "broadcast from rank {} of {}", root, size_);
  // One process: every "rank" already holds the root's bytes.
}

}  // namespace tpserve::runtime
