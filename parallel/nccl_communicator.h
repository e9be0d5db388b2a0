// Collectives on device memory through NCCL: one GPU per rank. Built only with CUDA; the header
// needs neither CUDA nor NCCL headers (the stream is a void*, the communicator an opaque pointer).
//
// Watchdog: the communicator is non-blocking (ncclConfig_t::blocking = 0). Start-up and every
// collective are followed by a poll, against a deadline, of ncclCommGetAsyncError (enqueue done,
// no asynchronous/remote error) and cudaStreamQuery (the collective and everything enqueued
// before it finished). On a timeout, an asynchronous NCCL error or a CUDA error seen while
// polling, the rank logs one line naming the collective, the rank and the error, calls
// ncclCommAbort (which also stops its kernels) and ends the whole job (MPI_Abort), so no rank is
// left spinning in a kernel whose peer is gone. While it polls, it also watches the peers through
// the host communicator (MpiCommunicator::exited_peer_while, silent_peers): a peer on this host
// whose process has exited ends the wait within 200 ms, and past the deadline the peers that no
// longer answer are named. Those failures abort NCCL and then fail as the host communicator's own
// waits do (MpiCommunicator::peer_failed: a PeerFailure rank 0 of `serve` answers its clients
// with, or the end of the job). So every collective returns with its result
// complete on the stream: the simplest design that keeps "a failure never hangs" true even when
// the next thing the caller does is an unwatched cudaMemcpy. A failure a call reports at once
// (bad argument, nothing enqueued) raises tpserve::Error naming the call and the rank.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "parallel/communicator.h"
#include "parallel/mpi_communicator.h"

struct ncclComm;  // nccl.h: typedef struct ncclComm* ncclComm_t

namespace tpserve::parallel {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over the ranks of `host`, NCCL rank = host.rank(). Makes `device` current on this
  // thread; `stream` (a cudaStream_t on that device, nullptr = legacy default stream) carries every
  // collective. Rank 0's ncclUniqueId travels by host.broadcast (itself watched); all_ok stays on
  // `host`, which must outlive this communicator.
  NcclCommunicator(MpiCommunicator& host, int device, void* stream,
                   std::chrono::milliseconds timeout);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  // dtype: kF32, kBF16, kF16 (NCCL sums in the element type), also kF64, kI32, kI64.
  void all_reduce_sum(void* data, size_t count, DType dtype) override;
  // Any dtype: moved as bytes.
  void all_gather(const void* send, size_t count, DType dtype, void* recv) override;
  void broadcast(void* data, size_t bytes, int root) override;
  // A one-float all-reduce on the device, watched like every collective.
  void barrier() override;
  bool all_ok(bool ok) override;

  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

 private:
  // Polls until the last NCCL call is through (ncclCommGetAsyncError) and, with include_stream,
  // all work on the stream finished; on error or timeout, fail(). `what` names the collective.
  void wait(const char* what, bool include_stream = true);
  [[noreturn]] void fail(const char* what, const std::string& reason);
  // A peer rank is dead or hung (found through the host communicator, which names it): aborts
  // NCCL here, then ends the wait as the host communicator would, so that rank 0 of `serve` answers
  // its clients with the reason (PeerFailure) before the job ends.
  [[noreturn]] void peer_lost(const std::string& reason);

  MpiCommunicator& host_;
  ncclComm* comm_ = nullptr;
  void* stream_ = nullptr;            // cudaStream_t
  float* barrier_scratch_ = nullptr;  // one float of device memory for barrier()
  int device_ = -1;
  int rank_ = 0;
  int size_ = 1;
  std::chrono::milliseconds timeout_;
};

}  // namespace tpserve::parallel
