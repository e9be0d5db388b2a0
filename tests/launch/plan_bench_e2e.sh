#!/usr/bin/env bash
# `tpserve plan` (per-rank memory plan from a shape preset) and `tpserve bench` (one shard, synthetic
# weights, CPU) end to end: plan rows, the doesn't-fit exit and message, unknown presets, and the
# bench's table, JSON and CSV. Both run as one process (no mpirun).
source "$(dirname "$0")/lib.sh"

# run1 TIMEOUT ARGS...: tpserve without mpirun; sets $status, $out, $err.
run1() {
  local limit=$1
  shift
  timeout --kill-after=5 "$limit" "$TPSERVE_BIN" "$@" >"$scratch/out" 2>"$scratch/err"
  status=$?
  out=$(cat "$scratch/out")
  err=$(cat "$scratch/err")
}

# qwen2-72b, bf16, 80 GiB: TP=1 (135.43 GiB of weights) does not fit; 2, 4, 8 do, with the per-rank
# weights halving (tests/runtime/planning/memory_plan_test.cc checks TP=8's numbers exactly).
run1 30 plan --preset qwen2-72b --tp 1,2,4,8 --dtype bf16 --gpu-mem 80GiB
[[ $status -ne 0 ]] || fail "plan with a TP=1 that does not fit exited 0"
for row in '^ +1 +135.43 GiB .* NO +1.000$' '^ +2 +67.71 GiB .* yes +1.000$' '^ +4 +33.86 GiB .* yes +1.000$' \
           '^ +8 +16.93 GiB .* 90160 +1442560 .* yes +1.000$'; do
  grep -Eq "$row" <<<"$out" || fail "plan lacks a row matching '$row': $out"
done
grep -q 'qwen2-72b does not fit at TP=1: weights 135.43 GiB' <<<"$err" ||
  fail "plan's doesn't-fit line missing: $err"
[[ $(grep -c 'does not fit' <<<"$err") -eq 1 ]] || fail "expected exactly one doesn't-fit line: $err"

run1 30 plan --preset qwen2-72b --tp 8 --gpu-mem 81920MiB
[[ $status -eq 0 ]] || fail "plan at TP=8 exited $status: $err"

# An uneven N: its row, the per-rank split (64 q heads = 22,21,21 over 8 KV groups of 8: KV heads
# 2 and 5 straddle two ranks, so ranks hold KV heads 0-2, 2-5, 5-7; 29568 units = 9856 x 3; 152064
# rows = 50688 x 3) and the predicted cost of the imbalance.
run1 30 plan --preset qwen2-72b --tp 3 --gpu-mem 80GiB
[[ $status -eq 0 ]] || fail "TP=3 for 64 heads: status $status, $err"
grep -Eq '^ +3 +[0-9.]+ GiB .* yes +1\.0[0-9]{2}$' <<<"$out" || fail "plan lacks the TP=3 row: $out"
grep -q 'tp 3 split: q heads 22,21,21 | kv heads 3,4,3 | intermediate 9856,9856,9856 | vocab 50688,50688,50688' <<<"$out" ||
  fail "plan lacks the TP=3 split: $out"
grep -Eq 'tp 3 imbalance 1\.0[0-9]{2} \(largest shard / mean, decode bytes\): a memory-bound decode step takes ~[0-9.]+% longer' <<<"$out" ||
  fail "plan lacks the TP=3 imbalance: $out"
run1 30 plan --preset qwen2-72b --tp 65 --gpu-mem 80GiB
[[ $status -ne 0 ]] && grep -q 'size 65 exceeds the 64 query heads' <<<"$err" ||
  fail "TP=65 for 64 heads: status $status, $err"

run1 30 plan --preset no-such-model --tp 1
[[ $status -ne 0 ]] && grep -q "unknown preset 'no-such-model'.*available: .*qwen2-72b" <<<"$err" ||
  fail "unknown preset: status $status, $err"

run1 30 plan --preset qwen2-72b --gpu-mem 80XB
[[ $status -ne 0 ]] && grep -q "'80XB' is not a size" <<<"$err" || fail "bad size: status $status, $err"

# The MoE preset is planned (its experts counted) but not benchmarked.
run1 30 plan --preset qwen2-57b-a14b --tp 2 --gpu-mem 80GiB
[[ $status -eq 0 ]] && grep -q 'MoE 64 experts' <<<"$out" || fail "MoE plan: status $status, $out $err"
run1 30 bench --device cpu --preset qwen2-57b-a14b --layers 1
[[ $status -ne 0 ]] && grep -q 'qwen2-57b-a14b: Qwen2-MoE forward not implemented yet' <<<"$err" ||
  fail "MoE bench: status $status, $err"

# Bench on the CPU: a real preset's shard (TP=4 keeps the vocab shard small) and the tiny fixture.
check_bench() {
  local name=$1
  shift
  run1 120 bench --device cpu "$@" --batch 1,2 --context 16 --iters 2 --warmup 1 --prompt-len 16 \
    --json "$scratch/$name.json" --csv "$scratch/$name.csv"
  if [[ $status -ne 0 ]]; then
    fail "bench $name exited $status: $(tail -3 <<<"$err")"
    return
  fi
  grep -Eq '^prefill: 16 tokens in ' <<<"$out" || fail "bench $name: no prefill line: $out"
  for b in 1 2; do
    grep -Eq "^ +$b +16 +[0-9.]+ +[0-9.]+ " <<<"$out" || fail "bench $name: no row for B=$b: $out"
  done
  python3 - "$scratch/$name.json" "$scratch/$name.csv" <<'PY' || fail "bench $name: bad JSON/CSV"
import csv, json, sys
doc = json.load(open(sys.argv[1]))
rows = doc["decode"]
assert [(r["batch"], r["context"]) for r in rows] == [(1, 16), (2, 16)], rows
for r in rows:
    assert not r["skipped"] and r["step_ms"] > 0 and r["tokens_per_s"] > 0, r
    assert r["bytes_per_step"] == r["weight_bytes"] + r["kv_bytes"] + r["activation_bytes"], r
    assert r["achieved_gbps"] > 0 and r["fraction_of_copy_bandwidth"] > 0, r
assert doc["copy_bandwidth_gbps"] > 0 and doc["prefill"]["tokens"] == 16, doc
table = list(csv.DictReader(open(sys.argv[2])))
assert len(table) == 2 and table[1]["batch"] == "2" and float(table[1]["step_ms"]) > 0, table
PY
  echo "ok: bench $name"
}
check_bench qwen2.5-7b --preset qwen2.5-7b --layers 1 --tp 4
check_bench qwen2_tied --model "$TPSERVE_FIXTURES/qwen2_tied"

# Quantized checkpoints: plan counts packed bytes and refuses a TP whose cuts fall inside a group.
run1 30 plan --model "$TPSERVE_FIXTURES/awq_llama" --tp 2 --gpu-mem 1GiB
[[ $status -eq 0 ]] || fail "plan of the AWQ fixture at TP=2: status $status, $err"
run1 30 plan --model "$TPSERVE_FIXTURES/awq_llama" --tp 3 --gpu-mem 1GiB
[[ $status -ne 0 ]] && grep -q 'cannot be split over 3 ranks.*valid TP sizes: 1, 2, 4' <<<"$err" ||
  fail "plan of the AWQ fixture at TP=3: status $status, $err"

# --quant on a preset: qwen2-72b as GPTQ int4 (group 128) fits one 80 GiB GPU (39.38 GiB of packed
# weights with bf16 embeddings and lm_head, vs 135.43 GiB in bf16); a TP whose cut falls inside a
# group is refused naming the flag; bench runs the packed shard on the CPU; --quant with --model and
# bad values are refused naming the flag.
run1 30 plan --preset qwen2-72b --tp 1,8 --gpu-mem 80GiB --quant gptq-int4
[[ $status -eq 0 ]] && grep -q '^qwen2-72b gptq-int4 ' <<<"$out" && grep -Eq '^ +1 +39.38 GiB .* yes ' <<<"$out" ||
  fail "plan --quant gptq-int4: status $status, $out $err"
run1 30 plan --preset qwen2.5-7b --tp 3 --quant awq-int4 --group-size 256
[[ $status -ne 0 ]] && grep -q -- '--quant awq-int4: 4-bit awq with group_size 256 cannot be split over 3 ranks' <<<"$err" ||
  fail "plan --quant at a TP inside a group: status $status, $err"
run1 120 bench --device cpu --preset qwen2.5-7b --layers 1 --tp 4 --quant gptq-int8 --group-size 64 \
  --batch 1 --context 16 --prompt-len 4 --iters 1 --warmup 0 --json "$scratch/q.json"
[[ $status -eq 0 ]] && grep -q '^qwen2.5-7b gptq-int8 g64: rank 0 of TP=4' <<<"$out" &&
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["quant"] == "gptq-int8" and d["group_size"] == 64, d' "$scratch/q.json" ||
  fail "bench --quant: status $status, $out $err"
run1 30 plan --model "$TPSERVE_FIXTURES/qwen2_tied" --quant gptq-int4
[[ $status -ne 0 ]] && grep -q -- "--quant gptq-int4 applies to --preset only" <<<"$err" || fail "--quant with --model: $status $err"
run1 30 plan --preset qwen2-72b --quant int4
[[ $status -ne 0 ]] && grep -q -- "--quant: 'int4' is not none, gptq-int4, gptq-int8 or awq-int4" <<<"$err" ||
  fail "--quant int4: $status $err"
run1 30 plan --preset qwen2-72b --quant awq-int4 --group-size 7
[[ $status -ne 0 ]] && grep -q -- "--group-size: 7 is not -1 or a positive even size" <<<"$err" || fail "--group-size 7: $status $err"

# The CPU quantized GEMV against the f32 one (numbers are for the report; only the lines are checked).
run1 60 bench --gemv 256x512 --gemv-bits 4 --gemv-group 128 --iters 2
[[ $status -eq 0 ]] && grep -q '^gemv 256x512 batch 1, 4-bit group 128' <<<"$out" &&
  grep -Eq '^  quantized / f32 step time: [0-9.]+' <<<"$out" || fail "bench --gemv: status $status, $out $err"
run1 30 bench --gemv 256x
[[ $status -ne 0 ]] && grep -q "\-\-gemv '256x': expected OUTxIN" <<<"$err" || fail "bench --gemv 256x: $status $err"
run1 30 bench --gemv 256x500 --gemv-group 128
[[ $status -ne 0 ]] && grep -q "an even group size that divides 500" <<<"$err" || fail "bench --gemv group: $status $err"
# --device cuda: every flag is refused by name before a device is looked for; without one, the
# refusal says so.
run1 30 bench --gemv 256x512 --device cuda --gemv-tokens 1,9000
[[ $status -ne 0 ]] && grep -q -- "--gemv-tokens: 9000 is not in 1..8192" <<<"$err" || fail "bench --gemv-tokens 9000: $status $err"
run1 30 bench --gemv 256x512 --device cuda --gemv-tokens 1,x
[[ $status -ne 0 ]] && grep -q -- "--gemv-tokens" <<<"$err" || fail "bench --gemv-tokens x: $status $err"
run1 30 bench --gemv 256x512,64x --device cuda
[[ $status -ne 0 ]] && grep -q "\-\-gemv '64x': expected OUTxIN" <<<"$err" || fail "bench --gemv list: $status $err"
run1 30 bench --gemv 256x512 --device cuda --dtype f32
[[ $status -ne 0 ]] && grep -q "the cuda GEMV bench runs bf16 or fp16" <<<"$err" || fail "bench --gemv f32: $status $err"
if ! command -v nvidia-smi >/dev/null; then
  run1 30 bench --gemv 256x512 --device cuda
  [[ $status -ne 0 ]] && grep -q "no CUDA device found" <<<"$err" || fail "bench --gemv --device cuda without a GPU: $status $err"
fi

run1 30 bench --device cuda --model "$TPSERVE_FIXTURES/qwen2_tied"
if [[ $status -eq 0 ]]; then
  echo "note: a CUDA device is present; --device cuda ran"
else
  grep -q 'no CUDA device found' <<<"$err" || fail "bench --device cuda without a GPU: $err"
fi
finish
