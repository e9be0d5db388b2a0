// GoogleTest under mpirun: every rank runs every test (they are collective); only rank 0 prints,
// and the job passes only if every rank passed.
#include <gtest/gtest.h>
#include <mpi.h>

#include "common/log.h"
#include "parallel/mpi_communicator.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  tpserve::parallel::MpiSession session;
  if (session.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (any_failed && !failed) std::fprintf(stderr, "rank %d passed, another rank failed\n", session.rank());
  return any_failed;
}
