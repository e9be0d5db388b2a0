// A Communicator for running ONE rank's shard of a tensor-parallel model in a single process, with
// no peers: all_reduce_sum leaves the partial sums as they are and all_gather copies this rank's
// part into every rank's slot. The numbers it produces are not the model's (partial sums are never
// completed); what it gives is the compute and memory traffic of one shard at TP=N without any
// communication. `tpserve bench` uses it; nothing that serves may.
#pragma once

#include "kernels/ops.h"
#include "parallel/communicator.h"
#include "runtime/model/device_buffer.h"

namespace tpserve::runtime {

class LocalShardCommunicator : public parallel::Communicator {
 public:
  // The collectives run on buffers of `backend` (device memory on CUDA).
  LocalShardCommunicator(int rank, int size, kernels::Backend& backend);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void all_reduce_sum(void* data, size_t count, DType dtype) override;
  void all_gather(const void* send, size_t count, DType dtype, void* recv) override;
  void broadcast(void* data, size_t bytes, int root) override;
  void barrier() override {}
  bool all_ok(bool ok) override { return ok; }

 private:
  int rank_;
  int size_;
  kernels::Backend& backend_;
  DeviceBuffer row_zero_;  // int32 {0} on the device: copy_rows' row list for one block copy
};

}  // namespace tpserve::runtime
