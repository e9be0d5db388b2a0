#!/usr/bin/env bash
# Sets everything up, then runs every test (unit, MPI under mpirun -np 1/2/3/4, end to end).
# GPU tests skip, saying so, on a machine without a GPU.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/launch/setup.sh"
cd "$root/build"
# One OpenBLAS thread per rank: the MPI tests oversubscribe the cores already.
OPENBLAS_NUM_THREADS=1 ctest --output-on-failure --timeout 600 -j "$(nproc)" "$@"
