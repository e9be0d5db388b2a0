// The GPU communicators under mpirun, on device buffers: the path choose_gpu_comm picks with
// --allow-shared-gpu (NCCL at one rank per GPU, host-staged MPI when ranks share a GPU, so -np 2..4
// runs on a single GPU), checked against hand-computed results: sums of small integers (exact in
// f32, bf16 and f16), gathered and broadcast byte patterns. Skips, visibly and on every rank
// together, where there is no CUDA device or no CUDA in the build.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "kernels/cuda_backend.h"
#include "parallel/gpu_communicator.h"
#include "parallel/half_convert.h"
#include "parallel/mpi_communicator.h"
#include "parallel/topology.h"

#if TPSERVE_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace tpserve::parallel {
namespace {

#if TPSERVE_HAVE_CUDA

void cuda(cudaError_t status, const char* call) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  detail::check_cuda(static_cast<int>(status), call, rank);  // raises: gtest reports the message
}

class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    cuda(cudaMalloc(&ptr_, bytes_ == 0 ? 1 : bytes_), "cudaMalloc");
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  void upload(const void* host) {
    cuda(cudaMemcpy(ptr_, host, bytes_, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
    cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  }
  std::vector<unsigned char> download() const {
    std::vector<unsigned char> host(bytes_);
    cuda(cudaMemcpy(host.data(), ptr_, bytes_, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
    return host;
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_;
};

struct GpuWorld {
  std::unique_ptr<MpiCommunicator> mpi;
  GpuCommChoice choice;
  cudaStream_t stream = nullptr;
  std::unique_ptr<Communicator> comm;
  std::string skip;         // every rank skips, for this reason
  std::string setup_error;  // every test fails with this
};

class GpuComm : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    world_ = new GpuWorld;
    world_->mpi = std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, std::chrono::seconds(60));
    MpiCommunicator& mpi = *world_->mpi;
    const int devices = kernels::cuda_device_count();
    // Agreed, so no rank runs a collective test that a skipping peer never joins.
    if (!mpi.all_ok(devices > 0)) {
      world_->skip = "no CUDA device visible on some rank (cudaGetDeviceCount): GPU communicator "
                     "tests skipped";
      return;
    }
    std::string local_error;
    try {
      world_->choice = choose_gpu_comm(node_topology(), devices, /*allow_shared_gpu=*/true);
      if (!world_->choice.ok()) {
        local_error = world_->choice.error;
      } else {
        cuda(cudaSetDevice(world_->choice.device), "cudaSetDevice");
        cuda(cudaStreamCreate(&world_->stream), "cudaStreamCreate");
      }
    } catch (const std::exception& e) {
      local_error = e.what();
    }
    if (!mpi.all_ok(local_error.empty())) {
      world_->setup_error = local_error.empty() ? "another rank could not set up its GPU" : local_error;
      return;
    }
    try {
      world_->comm = make_gpu_communicator(mpi, world_->choice, world_->stream,
                                           std::chrono::seconds(60));
    } catch (const std::exception& e) {
      world_->setup_error = e.what();
      return;
    }
    if (mpi.rank() == 0) {
      std::printf("[ gpu comm ] np=%d path=%s device=%d: %s\n", mpi.size(),
                  std::string(gpu_comm_kind_name(world_->choice.kind)).c_str(),
                  world_->choice.device, world_->choice.reason.c_str());
    }
  }

  static void TearDownTestSuite() {
    world_->comm.reset();  // NCCL finalize: collective, every rank is here
    if (world_->stream != nullptr) cudaStreamDestroy(world_->stream);
    delete world_;
    world_ = nullptr;
  }

  void SetUp() override {
    if (!world_->skip.empty()) GTEST_SKIP() << world_->skip;
    ASSERT_TRUE(world_->setup_error.empty()) << world_->setup_error;
  }

  Communicator& comm() { return *world_->comm; }

  static GpuWorld* world_;
};

GpuWorld* GpuComm::world_ = nullptr;

// Each rank contributes (rank + 1) * (i % 7 + 1); the sum over n ranks is n(n+1)/2 * (i % 7 + 1),
// at most 70 for n = 4: exact in f32, bf16 and f16.
void check_all_reduce(Communicator& comm, DType dtype, size_t count) {
  const int ranks = comm.size();
  std::vector<float> mine(count), expected(count);
  for (size_t i = 0; i < count; ++i) {
    mine[i] = static_cast<float>((comm.rank() + 1) * static_cast<int>(i % 7 + 1));
    expected[i] = static_cast<float>(ranks * (ranks + 1) / 2 * static_cast<int>(i % 7 + 1));
  }
  const size_t bytes = count * static_cast<size_t>(dtype_size(dtype));
  std::vector<unsigned char> encoded(bytes);
  narrow_from_f32(dtype, mine.data(), encoded.data(), count);
  DeviceBuffer buffer(bytes);
  buffer.upload(encoded.data());
  comm.all_reduce_sum(buffer.get(), count, dtype);
  std::vector<float> got(count);
  widen_to_f32(dtype, buffer.download().data(), got.data(), count);
  size_t wrong = 0, first = 0;
  for (size_t i = 0; i < count; ++i) {
    if (got[i] != expected[i] && wrong++ == 0) first = i;
  }
  EXPECT_EQ(wrong, 0u) << dtype_name(dtype) << " count " << count << " rank " << comm.rank()
                       << ": first mismatch at " << first << ": " << got[first] << " vs "
                       << expected[first];
}

TEST_F(GpuComm, AllReduceSumF32) {
  check_all_reduce(comm(), DType::kF32, 1031);
  check_all_reduce(comm(), DType::kF32, (size_t{1} << 20) + 3);  // grows the host staging buffer
}

TEST_F(GpuComm, AllReduceSumBF16) {
  check_all_reduce(comm(), DType::kBF16, 1031);
  check_all_reduce(comm(), DType::kBF16, (size_t{1} << 18) + 1);
}

TEST_F(GpuComm, AllReduceSumF16) {
  check_all_reduce(comm(), DType::kF16, 1031);
  check_all_reduce(comm(), DType::kF16, 1);
}

// recv = each rank's `count` elements, in rank order. Rank r's element i is a byte pattern of
// (r, i); I32 moves 4-byte multiples, BF16 x 3 and U8 x 3 odd sizes (the host path's fallback).
void check_all_gather(Communicator& comm, DType dtype, size_t count) {
  const size_t element = static_cast<size_t>(dtype_size(dtype));
  const size_t bytes = count * element;
  auto pattern = [&](int rank, size_t byte) {
    return static_cast<unsigned char>(rank * 37 + static_cast<int>(byte) * 5 + 1);
  };
  std::vector<unsigned char> mine(bytes);
  for (size_t b = 0; b < bytes; ++b) mine[b] = pattern(comm.rank(), b);
  DeviceBuffer send(bytes), recv(bytes * static_cast<size_t>(comm.size()));
  send.upload(mine.data());
  comm.all_gather(send.get(), count, dtype, recv.get());
  const std::vector<unsigned char> got = recv.download();
  size_t wrong = 0;
  for (int r = 0; r < comm.size(); ++r) {
    for (size_t b = 0; b < bytes; ++b) wrong += got[r * bytes + b] != pattern(r, b);
  }
  EXPECT_EQ(wrong, 0u) << dtype_name(dtype) << " x " << count << " rank " << comm.rank();
}

TEST_F(GpuComm, AllGather) {
  check_all_gather(comm(), DType::kI32, 5);
  check_all_gather(comm(), DType::kBF16, 3);
  check_all_gather(comm(), DType::kU8, 3);
  check_all_gather(comm(), DType::kF32, 4096);
}

void check_broadcast(Communicator& comm, size_t bytes, int root) {
  std::vector<unsigned char> data(bytes, 0xee), expected(bytes);
  for (size_t b = 0; b < bytes; ++b) expected[b] = static_cast<unsigned char>(b * 7 + 1);
  if (comm.rank() == root) data = expected;
  DeviceBuffer buffer(bytes);
  buffer.upload(data.data());
  comm.broadcast(buffer.get(), bytes, root);
  EXPECT_EQ(buffer.download(), expected) << bytes << " bytes from root " << root << " to rank "
                                         << comm.rank();
}

TEST_F(GpuComm, Broadcast) {
  check_broadcast(comm(), 13, comm().size() - 1);
  check_broadcast(comm(), (size_t{1} << 16) + 1, 0);
}

TEST_F(GpuComm, AllOkAndBarrier) {
  EXPECT_EQ(comm().rank(), world_->mpi->rank());
  EXPECT_EQ(comm().size(), world_->mpi->size());
  EXPECT_TRUE(comm().all_ok(true));
  EXPECT_FALSE(comm().all_ok(comm().rank() != comm().size() - 1));  // the last rank says no
  comm().barrier();
  comm().barrier();
  EXPECT_TRUE(comm().all_ok(true));
}

#else  // !TPSERVE_HAVE_CUDA

TEST(GpuComm, SkippedWithoutCuda) {
  GTEST_SKIP() << "built without CUDA (TPSERVE_HAVE_CUDA off): GPU communicator tests skipped";
}

#endif

}  // namespace
}  // namespace tpserve::parallel
