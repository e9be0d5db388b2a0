// Collectives on device memory for ranks that share a GPU (NCCL refuses two ranks on one device):
// every collective copies device -> pinned host buffer, runs the MPI collective there (bf16/f16
// summed in f32 and rounded back to nearest even), and copies the result back. Slow; it exists so
// TP=2..4 runs and is tested on a single GPU. Built only with CUDA.
//
// Watchdog: the MPI side is MpiCommunicator's (polled with its timeout, aborts the job naming the
// collective). The device copies are synchronised with cudaStreamSynchronize: they involve this
// rank's own GPU only, never a peer.
#pragma once

#include <cstddef>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/mpi_communicator.h"

namespace tpserve::parallel {

class HostStagedCommunicator final : public Communicator {
 public:
  // Makes `device` current on this thread; `stream` (a cudaStream_t on that device, nullptr = the
  // legacy default stream) orders the copies after the caller's work. `host` must outlive this.
  HostStagedCommunicator(MpiCommunicator& host, int device, void* stream);
  ~HostStagedCommunicator() override;
  HostStagedCommunicator(const HostStagedCommunicator&) = delete;
  HostStagedCommunicator& operator=(const HostStagedCommunicator&) = delete;

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  // dtype: kF32, kBF16, kF16.
  void all_reduce_sum(void* data, size_t count, DType dtype) override;
  // Any dtype: moved as bytes.
  void all_gather(const void* send, size_t count, DType dtype, void* recv) override;
  void broadcast(void* data, size_t bytes, int root) override;
  // Waits for this rank's stream, then an MPI barrier.
  void barrier() override;
  bool all_ok(bool ok) override;

 private:
  // A pinned host buffer of at least `bytes` (grown, never shrunk: steady state allocates nothing).
  unsigned char* staging(size_t bytes);
  void copy_to_host(void* host, const void* device, size_t bytes);
  void copy_to_device(void* device, const void* host, size_t bytes);
  void synchronize();

  MpiCommunicator& host_;
  void* stream_ = nullptr;  // cudaStream_t
  int device_ = -1;
  unsigned char* staging_ = nullptr;  // cudaHostAlloc'd
  size_t staging_bytes_ = 0;
  std::vector<float> sum_;  // f32 accumulator for bf16/f16 all-reduce
};

}  // namespace tpserve::parallel
