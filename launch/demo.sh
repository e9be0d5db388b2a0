#!/usr/bin/env bash
# Sets everything up, then runs the main job on the bundled tiny model: a Qwen2-architecture
# checkpoint (tests/fixtures/qwen2_tied, random weights, so its words are gibberish) served with
# tensor parallelism over 2 MPI ranks; one chat request is answered over gRPC, one greedy
# generation is compared with Hugging Face transformers' output, and the server drains and exits.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/launch/setup.sh"
model=${MODEL:-$root/tests/fixtures/qwen2_tied}
bin=$root/build/launch/tpserve
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "demo: mpirun -np 2 tpserve serve --model $model --port 0"
bash "$root/launch/mpirun.sh" -np 2 "$bin" serve --model "$model" --port 0 >"$log" &
job=$!
for _ in $(seq 100); do
  grep -q '^serving ' "$log" && break
  kill -0 $job 2>/dev/null || { echo "demo: the server failed to start"; exit 1; }
  sleep 0.1
done
line=$(grep '^serving ' "$log")
echo "demo: $line"
address=127.0.0.1:$(sed -E 's/.*:([0-9]+) \(.*/\1/' <<<"$line")
rank0=$(sed -E 's/.*pid ([0-9]+)\).*/\1/' <<<"$line")

echo "demo: tpserve chat --addr $address  (one turn: 'Hello there')"
printf 'Hello there\n' | "$bin" chat --addr "$address" --max-tokens 12 --temperature 0

echo "demo: SIGTERM to rank 0: drain and exit"
kill -TERM "$rank0"
wait $job
echo "demo: the server exited cleanly"

echo "demo: the same model, one-shot greedy generation over 2 ranks:"
bash "$root/launch/mpirun.sh" -np 2 "$bin" generate --model "$model" \
  --prompt-ids 1,17,300,42,7 --max-tokens 16 --ignore-eos 2>/dev/null
echo "transformers: $(head -n 1 "$model/reference_greedy.txt" | cut -d' ' -f2)"
