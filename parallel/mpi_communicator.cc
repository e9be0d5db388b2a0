#include "parallel/mpi_communicator.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <fmt/ranges.h>

#include <cstdlib>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "common/check.h"
#include "common/error.h"
#include "common/log.h"

namespace tpserve::parallel {

namespace {

// Every MPI call goes through this: a failure names the call and ends the job.
#define TPS_MPI(call)                                                                  \
  do {                                                                                 \
    int mpi_status_ = (call);                                                          \
    if (mpi_status_ != MPI_SUCCESS) {                                                  \
      char mpi_text_[MPI_MAX_ERROR_STRING];                                            \
      int mpi_length_ = 0;                                                             \
      MPI_Error_string(mpi_status_, mpi_text_, &mpi_length_);                          \
      ::tpserve::check_failed(#call, __FILE__, __LINE__, std::string(mpi_text_, mpi_length_)); \
    }                                                                                  \
  } while (0)

MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::kF32: return MPI_FLOAT;
    case DType::kF64: return MPI_DOUBLE;
    case DType::kI32: return MPI_INT32_T;
    case DType::kI64: return MPI_INT64_T;
    default:
      TPS_CHECK(false, "the MPI communicator has no reduction for {}", dtype_name(dtype));
      __builtin_unreachable();
  }
}

int checked_count(size_t count) {
  TPS_CHECK(count <= static_cast<size_t>(std::numeric_limits<int>::max()),
            "collective of {} elements exceeds MPI's int count", count);
  return static_cast<int>(count);
}

void abort_handler(int exit_code) { abort_job(exit_code); }

}  // namespace

void abort_job(int exit_code) {
  log().flush();
  // For a launcher that watches (launch/mpirun.sh across hosts): the job is ending, with this
  // status, even if mpirun itself then waits on a host it can no longer reach.
  if (const char* note = std::getenv("TPSERVE_ABORT_FILE"); note != nullptr && *note != '\0') {
    const int fd = ::open(note, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      const std::string line = std::to_string(exit_code) + "\n";
      [[maybe_unused]] const ssize_t written = ::write(fd, line.data(), line.size());
      ::close(fd);
    }
  }
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);
}

MpiSession::MpiSession() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    TPS_MPI(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided));
    owns_mpi_ = true;
  }
  TPS_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  TPS_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size_));
  MPI_Comm node_comm;
  TPS_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL,
                              &node_comm));
  TPS_MPI(MPI_Comm_rank(node_comm, &local_rank_));
  TPS_MPI(MPI_Comm_size(node_comm, &local_size_));
  MPI_Comm_free(&node_comm);
  init_logging(rank_, size_);
  set_abort_handler(&abort_handler);
}

MpiSession::~MpiSession() {
  if (!owns_mpi_) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::chrono::milliseconds timeout)
    : timeout_(timeout) {
  TPS_MPI(MPI_Comm_dup(comm, &comm_));
  TPS_MPI(MPI_Comm_rank(comm_, &rank_));
  TPS_MPI(MPI_Comm_size(comm_, &size_));
  peers_ = std::make_unique<PeerWatch>(comm_);
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void MpiCommunicator::peer_failed(const std::string& reason) {
  if (throw_on_peer_failure_) throw PeerFailure(reason);  // the catcher logs it
  log().critical("{}; ending the job", reason);
  abort_job(75);
}

std::optional<std::string> MpiCommunicator::exited_peer_while(const char* what) {
  // A syscall per local peer, so only every 200 ms. A dead peer ends the wait at once rather than
  // after the timeout, and before mpirun kills the survivors.
  constexpr auto kPeerCheckInterval = std::chrono::milliseconds(200);
  const auto now = std::chrono::steady_clock::now();
  if (now < next_peer_check_) return std::nullopt;
  next_peer_check_ = now + kPeerCheckInterval;
  peers_->answer_pings();
  if (auto exited = peers_->exited_peer()) {
    return fmt::format("{}; rank {} was waiting for it in {}", *exited, rank_, what);
  }
  return std::nullopt;
}

std::vector<std::string> MpiCommunicator::silent_peers() {
  std::vector<std::string> silent;
  for (int peer : peers_->silent_peers(std::chrono::seconds(1))) silent.push_back(peers_->describe(peer));
  return silent;
}

void MpiCommunicator::wait(MPI_Request& request, const char* what) {
  // Poll instead of blocking so a peer that never arrives is noticed. Spin briefly (the common
  // case on an idle rank is a short wait), then yield the core: CPU ranks are often oversubscribed.
  // The peer check also runs on entry (when due): a broadcast from this rank completes at once
  // even when its receivers are gone, and an idle server's only collective is such a heartbeat.
  const auto check_peers = [&] {
    if (auto exited = exited_peer_while(what)) peer_failed(*exited);
  };
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  check_peers();
  for (int spins = 0;; ++spins) {
    int done = 0;
    TPS_MPI(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (done) return;
    if (spins <= 1000) continue;
    check_peers();
    if (std::chrono::steady_clock::now() > deadline) {
      const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(timeout_).count();
      const std::vector<std::string> silent = silent_peers();
      if (silent.empty()) {
        peer_failed(fmt::format("collective {} did not complete within {} s on rank {}, though every "
                                "rank answers (ranks disagree on the collective sequence)",
                                what, seconds, rank_));
      }
      peer_failed(fmt::format("{} stopped answering (hung or dead): collective {} did not complete "
                              "within {} s on rank {}",
                              fmt::join(silent, ", "), what, seconds, rank_));
    }
    if (spins > 100000) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    } else {
      sched_yield();
    }
  }
}

void MpiCommunicator::all_reduce_sum(void* data, size_t count, DType dtype) {
  if (size_ == 1) return;
  MPI_Request request;
  TPS_MPI(MPI_Iallreduce(MPI_IN_PLACE, data, checked_count(count), mpi_type(dtype), MPI_SUM, comm_,
                         &request));
  wait(request, "all_reduce");
}

void MpiCommunicator::all_gather(const void* send, size_t count, DType dtype, void* recv) {
  MPI_Request request;
  const int n = checked_count(count);
  TPS_MPI(MPI_Iallgather(send, n, mpi_type(dtype), recv, n, mpi_type(dtype), comm_, &request));
  wait(request, "all_gather");
}

void MpiCommunicator::broadcast(void* data, size_t bytes, int root) {
  if (size_ == 1) return;
  MPI_Request request;
  TPS_MPI(MPI_Ibcast(data, checked_count(bytes), MPI_BYTE, root, comm_, &request));
  wait(request, "broadcast");
}

void MpiCommunicator::barrier() {
  if (size_ == 1) return;
  MPI_Request request;
  TPS_MPI(MPI_Ibarrier(comm_, &request));
  wait(request, "barrier");
}

bool MpiCommunicator::all_ok(bool ok) {
  int value = ok ? 1 : 0;
  if (size_ == 1) return ok;
  MPI_Request request;
  TPS_MPI(MPI_Iallreduce(MPI_IN_PLACE, &value, 1, MPI_INT, MPI_MIN, comm_, &request));
  wait(request, "all_ok");
  return value == 1;
}

}  // namespace tpserve::parallel
