// Collectives between the tensor-parallel ranks. One interface, two backends: MPI (host memory,
// CPU ranks and the host-staged GPU fallback) and NCCL (device memory). Every collective is
// watched: one that does not finish within the timeout ends the whole job with a line naming the
// collective, so a dead or hung peer never leaves the others waiting forever. A rank that must
// answer others before the job ends (rank 0 of `serve`: its clients) can ask for a PeerFailure
// exception instead and end the job itself (abort_job).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>

#include "common/dtype.h"
#include "common/error.h"

namespace tpserve::parallel {

// A peer rank died or stopped answering; what() names the rank and the cause. Code kUnavailable.
class PeerFailure : public Error {
 public:
  explicit PeerFailure(std::string reason) : Error(ErrorCode::kUnavailable, std::move(reason)) {}
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // data[i] = sum over ranks of data[i], in place. dtype: kF32 (MPI), kF32/kBF16/kF16 (NCCL).
  virtual void all_reduce_sum(void* data, size_t count, DType dtype) = 0;
  // recv = concatenation over ranks (in rank order) of each rank's `count` elements of send.
  virtual void all_gather(const void* send, size_t count, DType dtype, void* recv) = 0;
  // bytes from `root` to every rank.
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // True on every rank iff `ok` is true on every rank: how a phase (loading, validation) agrees
  // that all ranks succeeded before any of them goes on.
  virtual bool all_ok(bool ok) = 0;
};

}  // namespace tpserve::parallel
