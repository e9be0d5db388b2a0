#include "parallel/peer_watch.h"

#include <signal.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <thread>

#include <fmt/format.h>

namespace tpserve::parallel {

namespace {

constexpr int kPingTag = 1;
constexpr int kAnswerTag = 2;
constexpr size_t kHostBytes = 64;

}  // namespace

PeerWatch::PeerWatch(MPI_Comm comm) {
  MPI_Comm_dup(comm, &comm_);
  // Failures to reach a dead peer must come back as codes, not end the job from inside MPI.
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  int size = 1;
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size);
  std::array<char, kHostBytes> host{};
  gethostname(host.data(), host.size() - 1);
  host_ = host.data();
  const int pid = static_cast<int>(getpid());
  pids_.resize(static_cast<size_t>(size));
  std::vector<char> hosts(kHostBytes * static_cast<size_t>(size));
  MPI_Allgather(&pid, 1, MPI_INT, pids_.data(), 1, MPI_INT, comm_);
  MPI_Allgather(host.data(), static_cast<int>(kHostBytes), MPI_CHAR, hosts.data(),
                static_cast<int>(kHostBytes), MPI_CHAR, comm_);
  for (int r = 0; r < size; ++r) hosts_.emplace_back(hosts.data() + kHostBytes * static_cast<size_t>(r));
}

PeerWatch::~PeerWatch() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

std::string PeerWatch::describe(int rank) const {
  return fmt::format("rank {} (pid {} on {})", rank, pids_[static_cast<size_t>(rank)],
                     hosts_[static_cast<size_t>(rank)]);
}

std::optional<std::string> PeerWatch::exited_peer() const {
  for (int r = 0; r < static_cast<int>(pids_.size()); ++r) {
    if (r == rank_ || hosts_[static_cast<size_t>(r)] != host_) continue;
    // Signal 0 checks existence only. mpirun reaps its ranks at once, so a dead one is ESRCH.
    if (kill(pids_[static_cast<size_t>(r)], 0) != 0 && errno == ESRCH) {
      return describe(r) + " has exited";
    }
  }
  return std::nullopt;
}

void PeerWatch::answer_pings() {
  for (;;) {
    int waiting = 0;
    MPI_Status status;
    if (MPI_Iprobe(MPI_ANY_SOURCE, kPingTag, comm_, &waiting, &status) != MPI_SUCCESS || !waiting) {
      return;
    }
    int round = 0;
    MPI_Recv(&round, 1, MPI_INT, status.MPI_SOURCE, kPingTag, comm_, MPI_STATUS_IGNORE);
    // The pinger has its receive posted, so a one-int send completes at once.
    MPI_Send(&round, 1, MPI_INT, status.MPI_SOURCE, kAnswerTag, comm_);
  }
}

std::vector<int> PeerWatch::silent_peers(std::chrono::milliseconds patience) {
  const int size = static_cast<int>(pids_.size());
  const int round = ++ping_round_;
  std::vector<int>& answers = answers_;
  std::vector<MPI_Request>& receives = receives_;
  answers.resize(static_cast<size_t>(size), -1);
  receives.resize(static_cast<size_t>(size), MPI_REQUEST_NULL);
  for (int r = 0; r < size; ++r) {
    if (r == rank_) continue;
    MPI_Request ping;
    // The send buffer is a member: it outlives this call, however late the ping goes out.
    if (MPI_Isend(&ping_round_, 1, MPI_INT, r, kPingTag, comm_, &ping) == MPI_SUCCESS) {
      MPI_Request_free(&ping);
    }
    // An answer still outstanding from an earlier round stays posted (and is then out of date).
    if (receives[static_cast<size_t>(r)] == MPI_REQUEST_NULL) {
      MPI_Irecv(&answers[static_cast<size_t>(r)], 1, MPI_INT, r, kAnswerTag, comm_,
                &receives[static_cast<size_t>(r)]);
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + patience;
  std::vector<int> silent;
  for (;;) {
    answer_pings();  // another waiting rank may be asking us at the same time
    silent.clear();
    for (int r = 0; r < size; ++r) {
      if (r == rank_) continue;
      // Answers to an earlier round (a peer that was only slow then) do not count for this one.
      int done = 0;
      auto& receive = receives[static_cast<size_t>(r)];
      if (receive != MPI_REQUEST_NULL) MPI_Test(&receive, &done, MPI_STATUS_IGNORE);
      if (receive == MPI_REQUEST_NULL && answers[static_cast<size_t>(r)] != round) {
        MPI_Irecv(&answers[static_cast<size_t>(r)], 1, MPI_INT, r, kAnswerTag, comm_, &receive);
      }
      if (answers[static_cast<size_t>(r)] != round) silent.push_back(r);
    }
    if (silent.empty() || std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return silent;
}

}  // namespace tpserve::parallel
