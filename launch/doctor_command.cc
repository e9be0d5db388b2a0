// `tpserve doctor`: a pre-flight check of a launch, run exactly as the real job would be
// (same mpirun / srun line, same hostfile). Every rank reports its host, node-local rank, GPUs,
// CUDA and NCCL versions and peer access between its node's GPUs; then the ranks time an
// all-reduce round trip (host MPI, and on the GPU path the device communicator too) and check its
// result. Rank 0 prints one table; the exit code is non-zero when a check fails.
//
//   mpirun -np 2 tpserve doctor                 # CPU ranks: MPI only
//   srun -N 2 --ntasks-per-node 8 tpserve doctor --device cuda
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/log.h"
#include "launch/command.h"
#include "launch/rank_setup.h"
#include "parallel/device_info.h"
#include "parallel/mpi_communicator.h"
#include "parallel/topology.h"
#include "runtime/model/device_buffer.h"

namespace tpserve::launch {
namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct DoctorOptions {
  DeviceOptions device;
  double collective_timeout_s = 60;
  int64_t bandwidth_mib = 16;
};

Json rank_report(const parallel::NodeTopology& node) {
  const parallel::DeviceReport devices = parallel::local_device_report();
  Json gpus = Json::array();
  for (const parallel::GpuInfo& gpu : devices.gpus) {
    gpus.push_back({{"index", gpu.index}, {"name", gpu.name}, {"bus", gpu.pci_bus_id},
                    {"memory", gpu.total_memory}, {"sm", fmt::format("{}.{}", gpu.sm_major, gpu.sm_minor)}});
  }
  return {{"host", node.hostname}, {"local_rank", node.local_rank}, {"local_size", node.local_size},
          {"pid", static_cast<int>(getpid())}, {"cuda_runtime", devices.cuda_runtime_version},
          {"cuda_driver", devices.cuda_driver_version}, {"nccl", devices.nccl_version},
          {"gpus", gpus}, {"peer_access", devices.peer_access}, {"error", devices.error}};
}

// Every rank's report, on rank 0 (empty elsewhere).
std::vector<Json> gather_reports(const Json& mine, int rank, int size) {
  const std::string text = mine.dump();
  const int length = static_cast<int>(text.size());
  std::vector<int> lengths(static_cast<size_t>(size));
  MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::vector<int> offsets(static_cast<size_t>(size), 0);
  int total = 0;
  for (int r = 0; r < size; ++r) {
    offsets[static_cast<size_t>(r)] = total;
    total += lengths[static_cast<size_t>(r)];
  }
  std::string all(static_cast<size_t>(rank == 0 ? total : 0), '\0');
  MPI_Gatherv(text.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, 0,
              MPI_COMM_WORLD);
  std::vector<Json> reports;
  if (rank != 0) return reports;
  for (int r = 0; r < size; ++r) {
    reports.push_back(Json::parse(all.substr(static_cast<size_t>(offsets[static_cast<size_t>(r)]),
                                             static_cast<size_t>(lengths[static_cast<size_t>(r)]))));
  }
  return reports;
}

struct RoundTrip {
  bool correct = true;
  double latency_us = 0;    // one float, mean of the timed repetitions
  double algbw_gbps = 0;    // bytes / time for the large message
  double busbw_gbps = 0;    // algbw * 2 (n - 1) / n: what each link carried (NCCL's convention)
};

// Times all_reduce_sum on `data` (count floats in `backend` memory; host memory on the CPU) and
// checks that rank r's value r + 1 sums to n (n + 1) / 2 everywhere.
RoundTrip time_all_reduce(parallel::Communicator& comm, kernels::Backend& backend, size_t count) {
  RoundTrip result;
  runtime::DeviceBuffer buffer(backend, count * sizeof(float));
  std::vector<float> host(count, static_cast<float>(comm.rank() + 1));
  const auto run = [&](size_t n, int reps) {
    backend.copy_to_device(buffer.data(), host.data(), n * sizeof(float));
    backend.synchronize();
    comm.barrier();
    const auto start = Clock::now();
    for (int i = 0; i < reps; ++i) comm.all_reduce_sum(buffer.data(), n, DType::kF32);
    backend.synchronize();
    return std::chrono::duration<double>(Clock::now() - start).count() / reps;
  };
  // Correctness first, on one untimed reduction of the full message.
  backend.copy_to_device(buffer.data(), host.data(), count * sizeof(float));
  comm.all_reduce_sum(buffer.data(), count, DType::kF32);
  std::vector<float> back(count);
  backend.copy_to_host(back.data(), buffer.data(), count * sizeof(float));
  const float expected = static_cast<float>(comm.size() * (comm.size() + 1) / 2);
  for (float v : back) result.correct = result.correct && v == expected;
  run(1, 5);  // warm-up
  result.latency_us = run(1, 50) * 1e6;
  const double seconds = run(count, 5);
  result.algbw_gbps = static_cast<double>(count * sizeof(float)) / seconds / 1e9;
  result.busbw_gbps = result.algbw_gbps * 2.0 * (comm.size() - 1) / std::max(1, comm.size());
  result.correct = comm.all_ok(result.correct);
  return result;
}

std::string gib(double bytes) { return fmt::format("{:.1f} GiB", bytes / (1024.0 * 1024.0 * 1024.0)); }

// How many hosts the ranks span and the MPI transports Open MPI was told to use (mpirun --mca btl
// reaches the ranks as OMPI_MCA_btl): shared memory inside a host, TCP between hosts.
void print_transport(const std::vector<Json>& reports) {
  std::vector<std::string> hosts;
  for (const Json& j : reports) {
    const std::string host = j["host"].get<std::string>();
    if (std::find(hosts.begin(), hosts.end(), host) == hosts.end()) hosts.push_back(host);
  }
  const char* btl = std::getenv("OMPI_MCA_btl");
  const std::string transport =
      btl != nullptr ? fmt::format("Open MPI btl {}", btl) : "the MPI library's default";
  std::printf("hosts: %zu (%s); MPI transport: %s\n", hosts.size(),
              fmt::format("{}", fmt::join(hosts, ", ")).c_str(), transport.c_str());
}

void print_table(const std::vector<Json>& reports) {
  std::printf("%-5s %-20s %-6s %-8s %-5s %-7s %-7s %-8s %s\n", "rank", "host", "local", "pid",
              "gpus", "cuda", "driver", "nccl", "gpu (local rank's) / note");
  for (size_t r = 0; r < reports.size(); ++r) {
    const Json& j = reports[r];
    const Json& gpus = j["gpus"];
    std::string gpu = "-";
    if (!gpus.empty()) {
      const Json& g = gpus[static_cast<size_t>(j["local_rank"].get<int>()) % gpus.size()];
      gpu = fmt::format("{}: {} ({}, sm_{}, {})", g["index"].get<int>(), g["name"].get<std::string>(),
                        gib(g["memory"].get<double>()), g["sm"].get<std::string>(), g["bus"].get<std::string>());
    }
    if (!j["error"].get<std::string>().empty()) gpu += " [" + j["error"].get<std::string>() + "]";
    std::printf("%-5zu %-20s %-6s %-8d %-5zu %-7s %-7s %-8s %s\n", r, j["host"].get<std::string>().c_str(),
                fmt::format("{}/{}", j["local_rank"].get<int>(), j["local_size"].get<int>()).c_str(),
                j["pid"].get<int>(), gpus.size(), parallel::cuda_version_text(j["cuda_runtime"]).c_str(),
                parallel::cuda_version_text(j["cuda_driver"]).c_str(),
                parallel::nccl_version_text(j["nccl"]).c_str(), gpu.c_str());
  }
  // Peer access, once per host (from its local rank 0).
  for (const Json& j : reports) {
    const Json& peers = j["peer_access"];
    if (j["local_rank"].get<int>() != 0 || peers.size() < 2) continue;
    std::printf("peer access on %s (row reads column):\n      ", j["host"].get<std::string>().c_str());
    for (size_t c = 0; c < peers.size(); ++c) std::printf(" gpu%-2zu", c);
    std::printf("\n");
    for (size_t row = 0; row < peers.size(); ++row) {
      std::printf("gpu%-2zu ", row);
      for (size_t c = 0; c < peers.size(); ++c) std::printf(" %-5s", peers[row][c].get<bool>() ? "yes" : "no");
      std::printf("\n");
    }
  }
}

void print_round_trip(const char* path, const RoundTrip& t, int64_t mib, int ranks) {
  if (ranks == 1) {  // a one-rank all-reduce moves nothing: only its result means anything
    std::printf("all-reduce %-12s f32: one rank, nothing to time: %s\n", path,
                t.correct ? "ok" : "WRONG RESULT");
    return;
  }
  std::printf("all-reduce %-12s f32: 1 float %.1f us; %lld MiB %.2f GB/s algbw, %.2f GB/s busbw: %s\n",
              path, t.latency_us, static_cast<long long>(mib), t.algbw_gbps, t.busbw_gbps,
              t.correct ? "ok" : "WRONG RESULT");
}

int run_doctor(const DoctorOptions& options) {
  parallel::MpiSession session;
  parallel::MpiCommunicator comm(MPI_COMM_WORLD, std::chrono::milliseconds(
      static_cast<int64_t>(options.collective_timeout_s * 1000)));
  const parallel::NodeTopology node = parallel::node_topology(MPI_COMM_WORLD);
  const std::vector<Json> reports = gather_reports(rank_report(node), comm.rank(), comm.size());
  if (comm.rank() == 0) {
    std::printf("tpserve doctor: %d rank(s)\n", comm.size());
    print_table(reports);
    print_transport(reports);
    std::fflush(stdout);
  }
  const size_t count = static_cast<size_t>(options.bandwidth_mib) * 1048576 / sizeof(float);
  bool ok = true;
  auto cpu = kernels::make_cpu_backend();
  const RoundTrip mpi = time_all_reduce(comm, *cpu, count);
  ok = ok && mpi.correct;
  if (comm.rank() == 0) print_round_trip("(mpi, host)", mpi, options.bandwidth_mib, comm.size());
  if (options.device.device == "cuda") {
    RankDevice device;
    const bool ready = run_phase(comm, "GPU set-up", [&] {
      device = make_rank_device(options.device, comm, comm.timeout());
    });
    if (!ready) return 1;
    const RoundTrip gpu = time_all_reduce(*device.model_comm, *device.backend, count);
    ok = ok && gpu.correct;
    if (comm.rank() == 0) print_round_trip("(gpu)", gpu, options.bandwidth_mib, comm.size());
  }
  if (comm.rank() == 0) {
    std::printf("doctor: %s\n", ok ? "all checks passed" : "FAILED");
    std::fflush(stdout);
  }
  return ok ? 0 : 1;
}

}  // namespace

void register_doctor_command(CLI::App& app, CommandRunner& runner) {
  auto options = std::make_shared<DoctorOptions>();
  CLI::App* sub = app.add_subcommand(
      "doctor", "Pre-flight check of a launch: ranks, hosts, GPUs, CUDA/NCCL, an all-reduce round trip");
  add_device_options(*sub, options->device);
  sub->add_option("--collective-timeout", options->collective_timeout_s,
                  "Seconds a collective may wait for a peer before the job is ended")
      ->check(CLI::Range(0.1, 3600.0));
  sub->add_option("--bandwidth-mib", options->bandwidth_mib, "Message size of the bandwidth test, MiB")
      ->check(CLI::Range(1, 4096));
  sub->callback([options, &runner] { runner = [options] { return run_doctor(*options); }; });
}

}  // namespace tpserve::launch
