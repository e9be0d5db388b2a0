// Who a rank is waiting for, when a collective does not complete: the other ranks' process ids
// and hosts (gathered once), a cheap check for a peer on this host whose process has exited, and
// a ping that finds the peers which no longer answer (dead anywhere, or hung).
#pragma once

#include <mpi.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace tpserve::parallel {

class PeerWatch {
 public:
  // Collective over `comm` (every rank calls it); duplicates it for the pings.
  explicit PeerWatch(MPI_Comm comm);
  ~PeerWatch();
  PeerWatch(const PeerWatch&) = delete;
  PeerWatch& operator=(const PeerWatch&) = delete;

  // "rank R (pid P on HOST) has exited" for the first peer on this host whose process is gone.
  std::optional<std::string> exited_peer() const;

  // Answers pings from ranks that are themselves waiting on a collective. Call while waiting.
  void answer_pings();

  // Pings every other rank and waits up to `patience` for the answers; the ranks (in order) that
  // gave none. Only ranks that are waiting on a collective (and so call answer_pings) answer.
  std::vector<int> silent_peers(std::chrono::milliseconds patience);

  // How a peer is named in a failure line: "rank R (pid P on HOST)".
  std::string describe(int rank) const;

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  std::string host_;
  std::vector<int> pids_;
  std::vector<std::string> hosts_;
  int ping_round_ = 0;
  std::vector<int> answers_;            // the round each peer last answered
  std::vector<MPI_Request> receives_;   // posted receives for those answers
};

}  // namespace tpserve::parallel
