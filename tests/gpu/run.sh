#!/usr/bin/env bash
# The GPU checks, run on a GPU machine from a bundle made by bundle.sh (the machine needs the NVIDIA
# driver and CUDA 13's cuBLASLt/NCCL, not our Debian packages). Logs and benchmark files go to OUT.
#
#   bash tests/gpu/run.sh BUNDLE OUT
#
# The test binaries read fixtures from the path they were built at (/work/main/tests/fixtures):
# run from a checkout at /work/main, or let this script link it there.
set -uo pipefail
bundle=${1:?bundle} out=${2:?out dir}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mkdir -p "$out"
log=$out/gpu_log.txt
exec > >(tee "$log") 2>&1
source "$repo/tests/gpu/env.sh"

step "devices"
nvidia-smi -L
ldd "$bin/tpserve" | grep -E "not found|cublas|nccl|cudart"

step "CUDA ops against the CPU twins"
timeout 180 "$bin/tpserve_unit_tests" --gtest_filter='Cuda*:*ScatterAdd*:*Moe*' --gtest_brief=1

# np=3 on one GPU (host-staged): uneven shards of every 8-head fixture (3,3,2) and ChatGLM (2,1,1).
for np in 1 2 3; do
  step "GPU model and communicator tests, np=$np"
  timeout 180 "${mpi[@]}" -np $np "$bin/tpserve_mpi_tests" --gtest_filter='*Gpu*' --gtest_brief=1 2>&1 |
    grep -vE "^\[ +OK|^\[ RUN" | grep -E "fidelity|gpu comm|FAILED|PASSED|Failure|error|skipped|Expected|Which|actual|SKIPPED" | head -80
done

step "generate on the GPU: TP=1 (NCCL) and TP=2 on one GPU (host-staged), qwen2_tied greedy"
echo "transformers: $(head -1 "$repo/tests/fixtures/qwen2_tied/reference_greedy.txt")"
timeout 60 "${mpi[@]}" -np 1 "$bin/tpserve" generate --model "$repo/tests/fixtures/qwen2_tied" \
  --prompt-ids 1,17,300,42,7 --max-tokens 16 --ignore-eos --device cuda --dtype fp16 2>&1 | grep -E "tokens:|decode:|error"
timeout 60 "${mpi[@]}" -np 2 "$bin/tpserve" generate --model "$repo/tests/fixtures/qwen2_tied" \
  --prompt-ids 1,17,300,42,7 --max-tokens 16 --ignore-eos --device cuda --dtype fp16 --allow-shared-gpu 2>&1 |
  grep -E "tokens:|decode:|error|host-staged"

step "generate on the GPU: TP=5 on one GPU (host-staged), uneven shards of qwen2_tied's 12 heads"
timeout 90 "${mpi[@]}" -np 5 "$bin/tpserve" generate --model "$repo/tests/fixtures/qwen2_tied" \
  --prompt-ids 1,17,300,42,7 --max-tokens 16 --ignore-eos --device cuda --dtype fp16 --allow-shared-gpu 2>&1 |
  grep -E "tokens:|decode:|error"

step "doctor on the GPU"
timeout 60 "${mpi[@]}" -np 1 "$bin/tpserve" doctor --device cuda 2>&1 | grep -v "^\["
timeout 60 "${mpi[@]}" -np 2 "$bin/tpserve" doctor --device cuda --allow-shared-gpu 2>&1 | grep -v "^\["

step "serve on the GPU (TP=1, NCCL) and load it with bench-serve"
serve_log=$out/serve_log.txt
"${mpi[@]}" -np 1 "$bin/tpserve" serve --model "$repo/tests/fixtures/qwen2_tied" --device cuda --port 0 \
  >"$serve_log" 2>&1 &
job=$!
for _ in $(seq 300); do grep -q '^serving ' "$serve_log" && break; sleep 0.1; done
line=$(grep '^serving ' "$serve_log")
echo "$line"; grep -E "memory plan|rank 0 on" "$serve_log"
port=$(sed -E 's/.*:([0-9]+) \(.*/\1/' <<<"$line")
pid=$(sed -E 's/.*pid ([0-9]+)\).*/\1/' <<<"$line")
timeout 60 "$bin/tpserve" bench-serve --addr 127.0.0.1:$port --requests 256 --concurrency 32 \
  --prompt-len 32 --output-len 32 2>&1 | tail -12
kill -TERM "$pid"; wait $job; echo "serve exit: $?"

step "batch job on the GPU, TP=2 on one GPU (host-staged)"
python3 - "$repo/tests/fixtures/qwen2_tied/reference_greedy.txt" /tmp/prompts.jsonl <<'PY'
import json, sys
refs = [line.split() for line in open(sys.argv[1]) if line.strip()]
with open(sys.argv[2], "w") as f:
    for i in range(60):
        f.write(json.dumps({"id": i, "prompt_ids": [int(t) for t in refs[i % 3][0].split(",")],
                            "temperature": 0, "max_tokens": 16, "ignore_eos": True}) + "\n")
PY
timeout 90 "${mpi[@]}" -np 2 "$bin/tpserve" generate --model "$repo/tests/fixtures/qwen2_tied" \
  --input /tmp/prompts.jsonl --output /tmp/out.jsonl --device cuda --dtype fp16 --allow-shared-gpu \
  --max-seqs 16 --no-progress 2>&1 | grep -E "^batch|error"
python3 - "$repo/tests/fixtures/qwen2_tied/reference_greedy.txt" /tmp/out.jsonl <<'PY'
import json, sys
refs = [line.split() for line in open(sys.argv[1]) if line.strip()]
rows = [json.loads(l) for l in open(sys.argv[2])]
same = sum(r["choices"][0]["token_ids"] == [int(t) for t in refs[r["id"] % 3][1].split(",")] for r in rows)
print(f"batch on GPU: {len(rows)} results, {same} equal to transformers' greedy continuation")
PY

step "a model that does not fit: qwen2-72b's config on one 80 GB GPU"
mkdir -p /tmp/q72 && cp "$repo/configs/presets/qwen2-72b.json" /tmp/q72/config.json
timeout 60 "${mpi[@]}" -np 1 "$bin/tpserve" serve --model /tmp/q72 --device cuda --port 0 2>&1 |
  grep -E "error|does not fit" | head -3
echo "exit: ${PIPESTATUS[0]}"

step "decode benchmark: qwen2.5-7b bf16, whole model on one GPU"
timeout 240 "$bin/tpserve" bench --device cuda --dtype bf16 --preset qwen2.5-7b --batch 1,8,32,64 \
  --context 128,1024,4096 --iters 20 --prompt-len 512 --json "$out/bench_qwen2.5-7b.json" \
  --csv "$out/bench_qwen2.5-7b.csv" 2>&1 | grep -v "^\[.*info\]"

step "uneven shards (issue 19): qwen2.5-7b at TP=3 (28 heads: 10,9,9), the largest and a smallest shard"
for r in 0 2; do
  timeout 90 "$bin/tpserve" bench --device cuda --dtype bf16 --preset qwen2.5-7b --tp 3 --rank $r \
    --batch 1,32 --context 1024 --iters 10 --prompt-len 512 \
    --json "$out/bench_qwen2.5-7b_tp3_rank$r.json" 2>&1 | grep -v "^\[.*info\]"
done

step "decode benchmark: one rank's shard of qwen2-72b at TP=8"
timeout 120 "$bin/tpserve" bench --device cuda --dtype bf16 --preset qwen2-72b --tp 8 --batch 1,32 \
  --context 1024 --iters 10 --prompt-len 512 --json "$out/bench_qwen2-72b_tp8.json" 2>&1 | grep -v "^\[.*info\]"
# Issue 18: load at the speed of the disk. A qwen2.5-7b-shaped bf16 checkpoint (14.2 GiB, random
# weights) written to this machine's disk, read once to put it in the page cache, then loaded at
# TP=1 straight into bf16 (a byte copy: no conversion) and into fp16 (converted on the device).
# Goal: load/min(cache, h2d) >= 0.8, where cache is the page-cache read and h2d the pinned
# host-to-device copy bandwidth measured in the same run.
step "load benchmark: qwen2.5-7b-shaped bf16 checkpoint, TP=1"
ckpt=${TPSERVE_LOAD_BENCH_DIR:-/tmp/tpserve_load_qwen2.5-7b}
if [[ ! -f $ckpt/model.safetensors.index.json ]]; then
  timeout 420 python3 "$repo/tests/bench/make_load_bench_model.py" "$ckpt" --shape qwen2.5-7b \
    --dtype bf16 --files 4 || echo "load benchmark: generating the checkpoint failed"
fi
cat "$ckpt"/*.safetensors > /dev/null
for dtype in bf16 fp16; do
  timeout 180 "${mpi[@]}" -np 1 "$bin/tpserve" bench --load "$ckpt" --device cuda --dtype $dtype \
    --json "$out/load_qwen2.5-7b_$dtype.json" 2>&1 | grep -v "^\[.*info\]"
done

step "done"
