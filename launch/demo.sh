#!/usr/bin/env bash
# Sets everything up, then runs the main job on the bundled tiny model: a Qwen2-architecture
# checkpoint (tests/fixtures/qwen2_tied) served with tensor parallelism over 2 MPI ranks, answering
# one greedy generation request.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/launch/setup.sh"
model=${MODEL:-$root/tests/fixtures/qwen2_tied}
echo "demo: mpirun -np 2 tpserve generate --model $model --prompt-ids 1,17,300,42,7 --max-tokens 16"
bash "$root/launch/mpirun.sh" -np 2 "$root/build/tpserve" generate --model "$model" \
  --prompt-ids 1,17,300,42,7 --max-tokens 16
echo "demo: transformers' greedy continuation of the same prompt:"
head -n 1 "$model/reference_greedy.txt" | cut -d' ' -f2
