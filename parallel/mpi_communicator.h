// The MPI communicator and the process's MPI life cycle.
#pragma once

#include <mpi.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/peer_watch.h"

namespace tpserve::parallel {

// Initialises MPI (once per process), installs MPI_Abort as the check/abort handler and sets the
// log prefix to the rank. Finalises MPI on destruction.
class MpiSession {
 public:
  MpiSession();
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  // Rank among the processes of this node (MPI_COMM_TYPE_SHARED): picks the GPU.
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }

 private:
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  bool owns_mpi_ = false;
};

// Ends every rank of the job now (MPI_Abort), after flushing the log and, when the environment
// names a file in TPSERVE_ABORT_FILE, appending the exit code to it (launch/mpirun.sh).
[[noreturn]] void abort_job(int exit_code);

class MpiCommunicator final : public Communicator {
 public:
  // Duplicates `comm` so its traffic never mixes with anyone else's.
  explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD,
                           std::chrono::milliseconds timeout = std::chrono::seconds(300));
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void all_reduce_sum(void* data, size_t count, DType dtype) override;
  void all_gather(const void* send, size_t count, DType dtype, void* recv) override;
  void broadcast(void* data, size_t bytes, int root) override;
  void barrier() override;
  bool all_ok(bool ok) override;

  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  // True: a dead or hung peer throws PeerFailure (after logging it) instead of ending the job, so
  // the caller can answer its clients first and then call abort_job itself.
  void set_throw_on_peer_failure(bool on) { throw_on_peer_failure_ = on; }

  // For every wait on a collective, this communicator's own and those of a device communicator over
  // the same ranks (NCCL's watchdog), so that a failed peer is named the same way on either path.
  // Call while polling: answers the other ranks' pings and, at most every 200 ms, looks for a peer
  // on this host whose process has exited; returns the failure line naming it and `what`.
  std::optional<std::string> exited_peer_while(const char* what);
  // Past a wait's deadline: the peers that do not answer a ping within a second, each as
  // "rank R (pid P on HOST)". Only ranks that are themselves waiting answer.
  std::vector<std::string> silent_peers();
  // Ends a wait that a peer failed: throws PeerFailure (see set_throw_on_peer_failure), or logs
  // `reason` and ends the job.
  [[noreturn]] void peer_failed(const std::string& reason);

 private:
  // Waits for a non-blocking collective. A peer on this host whose process has exited fails it
  // at once; past the timeout, so does any peer that stops answering. The failure names the peer
  // and `what`, and ends the job (or throws PeerFailure, see above).
  void wait(MPI_Request& request, const char* what);

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<PeerWatch> peers_;
  std::chrono::steady_clock::time_point next_peer_check_{};
  bool throw_on_peer_failure_ = false;
};

}  // namespace tpserve::parallel
