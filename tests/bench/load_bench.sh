#!/usr/bin/env bash
# Checkpoint load throughput on the CPU at TP 1/2/4 (issue 18), the numbers in the README:
#   bash tests/bench/load_bench.sh [BUILD_DIR] [OUT_DIR]
# Generates (once) a 1.22 GiB LLaMA-shaped checkpoint in f16 and in bf16 under $TPSERVE_CACHE
# (default ~/.cache/tpserve) with tests/bench/make_load_bench_model.py, reads it once so it sits in
# the page cache, then runs `tpserve bench --load` under mpirun -np 1, 2 and 4 (--oversubscribe:
# on a machine with fewer cores than ranks, the ranks share them). With COLD=1 and root, the page
# cache is dropped before each run instead, so read_bytes (disk/file) shows what came from the disk.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-$repo/build-cpu}
out=${2:-$repo/build-cpu/load_bench}
cache=${TPSERVE_CACHE:-$HOME/.cache/tpserve}
mkdir -p "$out" "$cache"
mpi=(mpirun --allow-run-as-root --oversubscribe --bind-to none --mca btl self,vader
     --mca btl_vader_single_copy_mechanism none)
for dtype in f16 bf16; do
  ckpt=$cache/load_bench_llama-1.2g_$dtype
  [[ -f $ckpt/model.safetensors.index.json ]] ||
    python3 "$repo/tests/bench/make_load_bench_model.py" "$ckpt" --dtype "$dtype"
  for np in 1 2 4; do
    if [[ ${COLD:-0} == 1 ]]; then
      sync && echo 3 > /proc/sys/vm/drop_caches
    else
      cat "$ckpt"/*.safetensors > /dev/null
    fi
    echo "=== $dtype checkpoint, mpirun -np $np"
    "${mpi[@]}" -np "$np" "$build/launch/tpserve" bench --load "$ckpt" \
      --json "$out/load_${dtype}_np$np.json" 2>&1 | grep -v "^\[.*info\]"
  done
done
