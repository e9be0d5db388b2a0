#include "parallel/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <sched.h>

#include <fmt/ranges.h>

#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "common/check.h"
#include "common/error.h"
#include "common/log.h"
#include "parallel/gpu_communicator.h"

namespace tpserve::parallel {

namespace {

// Poll tightly this many times (a collective between idle GPUs takes microseconds), then yield,
// then sleep: a long wait (a slow peer still loading) must not burn a core.
constexpr long kSpinPolls = 2000;
constexpr long kYieldPolls = 200000;

cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

std::string nccl_text(ncclResult_t result, ncclComm_t comm) {
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && *last != '\0') {
    return fmt::format("{} ({})", ncclGetErrorString(result), last);
  }
  return ncclGetErrorString(result);
}

// A failure the call reports at once: raise, naming the call and the rank. ncclInProgress is not
// a failure on a non-blocking communicator; wait() sees the call through.
void check_nccl(ncclResult_t result, const char* call, int rank, ncclComm_t comm) {
  if (result == ncclSuccess || result == ncclInProgress) return;
  raise(ErrorCode::kUnavailable, "{} failed on rank {}: {}", call, rank, nccl_text(result, comm));
}

#define TPS_NCCL(call) check_nccl((call), #call, rank_, comm_)
#define TPS_CUDA(call) detail::check_cuda(static_cast<int>(call), #call, rank_)

ncclDataType_t reduce_type(DType dtype) {
  switch (dtype) {
    case DType::kF32: return ncclFloat32;
    case DType::kBF16: return ncclBfloat16;
    case DType::kF16: return ncclFloat16;
    case DType::kF64: return ncclFloat64;
    case DType::kI32: return ncclInt32;
    case DType::kI64: return ncclInt64;
    default:
      TPS_CHECK(false, "the NCCL communicator has no reduction for {}", dtype_name(dtype));
      __builtin_unreachable();
  }
}

}  // namespace

NcclCommunicator::NcclCommunicator(MpiCommunicator& host, int device, void* stream,
                                   std::chrono::milliseconds timeout)
    : host_(host),
      stream_(stream),
      device_(device),
      rank_(host.rank()),
      size_(host.size()),
      timeout_(timeout) {
  // Local set-up first, agreed on by every rank: a rank whose GPU is unusable makes every rank
  // raise now, instead of leaving its peers in NCCL's start-up until the watchdog fires.
  ncclUniqueId id{};
  std::string local_error;
  try {
    TPS_CUDA(cudaSetDevice(device_));
    TPS_CUDA(cudaMalloc(&barrier_scratch_, sizeof(float)));
    TPS_CUDA(cudaMemset(barrier_scratch_, 0, sizeof(float)));
    if (rank_ == 0) TPS_NCCL(ncclGetUniqueId(&id));
  } catch (const Error& e) {
    local_error = e.what();
  }
  if (!host_.all_ok(local_error.empty())) {
    if (barrier_scratch_ != nullptr) cudaFree(barrier_scratch_);
    if (!local_error.empty()) raise(ErrorCode::kUnavailable, "{}", local_error);
    raise(ErrorCode::kUnavailable,
          "NCCL start-up: another rank could not set up its GPU (see its log line); rank {} "
          "stops too",
          rank_);
  }
  host_.broadcast(&id, sizeof(id), 0);

  // Non-blocking, so start-up can be watched like a collective: a peer that never joins ends the
  // job after `timeout` instead of hanging in ncclCommInitRank.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  const ncclResult_t started = ncclCommInitRankConfig(&comm, size_, id, rank_, &config);
  comm_ = comm;
  if (started != ncclSuccess && started != ncclInProgress) {
    // Peers are already in start-up: they cannot be told to stop, so end the job now.
    fail("init", fmt::format("ncclCommInitRankConfig: {}", nccl_text(started, comm_)));
  }
  if (comm_ == nullptr) fail("init", "ncclCommInitRankConfig returned no communicator");
  wait("init", /*include_stream=*/false);
}

NcclCommunicator::~NcclCommunicator() {
  if (comm_ != nullptr) {
    if (std::uncaught_exceptions() > 0) {
      // Unwinding an error: peers may be gone, and finalize waits for them. Abort locally.
      ncclCommAbort(comm_);
    } else {
      // Finalize is non-blocking here: poll it to completion, but never past the timeout.
      const auto deadline = std::chrono::steady_clock::now() + timeout_;
      ncclResult_t state = ncclCommFinalize(comm_);
      if (state == ncclInProgress || state == ncclSuccess) {
        do {
          if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) break;
          if (state != ncclInProgress) break;
          std::this_thread::sleep_for(std::chrono::microseconds(100));
        } while (std::chrono::steady_clock::now() < deadline);
      }
      if (state == ncclSuccess) {
        ncclCommDestroy(comm_);
      } else {
        log().warn("NCCL finalize did not complete on rank {} ({}); aborting the communicator",
                   rank_, state == ncclInProgress ? "timed out" : ncclGetErrorString(state));
        ncclCommAbort(comm_);
      }
    }
    comm_ = nullptr;
  }
  if (barrier_scratch_ != nullptr) cudaFree(barrier_scratch_);
}

void NcclCommunicator::fail(const char* what, const std::string& reason) {
  log().critical("NCCL {} failed on rank {}/{} (GPU {}): {}; aborting NCCL and ending the job",
                 what, rank_, size_, device_, reason);
  if (comm_ != nullptr) {
    ncclCommAbort(comm_);  // also stops this rank's NCCL kernels
    comm_ = nullptr;
  }
  abort_job(1);
}

void NcclCommunicator::peer_lost(const std::string& reason) {
  if (comm_ != nullptr) {
    ncclCommAbort(comm_);  // also stops this rank's NCCL kernels
    comm_ = nullptr;
  }
  host_.peer_failed(fmt::format("NCCL on GPU {}: {}", device_, reason));
}

void NcclCommunicator::wait(const char* what, bool include_stream) {
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  for (long polls = 0;; ++polls) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t status = ncclCommGetAsyncError(comm_, &state);
    if (status != ncclSuccess) {
      fail(what, fmt::format("ncclCommGetAsyncError: {}", nccl_text(status, comm_)));
    }
    if (state != ncclSuccess && state != ncclInProgress) fail(what, nccl_text(state, comm_));
    if (state == ncclSuccess) {
      if (!include_stream) return;
      const cudaError_t query = cudaStreamQuery(as_stream(stream_));
      if (query == cudaSuccess) return;
      if (query != cudaErrorNotReady) {
        fail(what, fmt::format("cudaStreamQuery: {}: {}", cudaGetErrorName(query),
                               cudaGetErrorString(query)));
      }
    }
    if (polls < kSpinPolls) continue;
    if (auto exited = host_.exited_peer_while(what)) peer_lost(*exited);
    if (std::chrono::steady_clock::now() > deadline) {
      const std::vector<std::string> silent = host_.silent_peers();
      if (!silent.empty()) {
        peer_lost(fmt::format("{} stopped answering (hung or dead): {} did not complete within {:.1f} s on rank {}",
                              fmt::join(silent, ", "), what, std::chrono::duration<double>(timeout_).count(), rank_));
      }
      fail(what, fmt::format("did not complete within {:.1f} s ({}): a peer rank is hung or dead",
                             std::chrono::duration<double>(timeout_).count(),
                             state == ncclInProgress ? "NCCL call still in progress"
                                                     : "stream still busy"));
    }
    if (polls < kYieldPolls) {
      sched_yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
}

void NcclCommunicator::all_reduce_sum(void* data, size_t count, DType dtype) {
  if (count == 0) return;
  TPS_NCCL(ncclAllReduce(data, data, count, reduce_type(dtype), ncclSum, comm_,
                         as_stream(stream_)));
  wait("all_reduce");
}

void NcclCommunicator::all_gather(const void* send, size_t count, DType dtype, void* recv) {
  const size_t bytes = count * static_cast<size_t>(dtype_size(dtype));
  if (bytes == 0) return;
  TPS_NCCL(ncclAllGather(send, recv, bytes, ncclUint8, comm_, as_stream(stream_)));
  wait("all_gather");
}

void NcclCommunicator::broadcast(void* data, size_t bytes, int root) {
  TPS_CHECK(root >= 0 && root < size_, "broadcast root {} outside 0..{}", root, size_ - 1);
  if (bytes == 0) return;
  TPS_NCCL(ncclBroadcast(data, data, bytes, ncclUint8, root, comm_, as_stream(stream_)));
  wait("broadcast");
}

void NcclCommunicator::barrier() {
  TPS_NCCL(ncclAllReduce(barrier_scratch_, barrier_scratch_, 1, ncclFloat32, ncclSum, comm_,
                         as_stream(stream_)));
  wait("barrier");
}

bool NcclCommunicator::all_ok(bool ok) { return host_.all_ok(ok); }

}  // namespace tpserve::parallel
