#!/usr/bin/env bash
# TP sweeps and the scaling model end to end: `tpserve bench --tp 1,2` (one shard per N, CPU) writes
# well-formed JSON/CSV with both TP sizes and the --gen-len points; `tpserve scale` prints sane
# rows for qwen2-72b and takes the bench's measured step times; `scale --measure-comm` runs under
# mpirun; launch/plot_scaling.sh draws a non-empty PNG where gnuplot is installed.
source "$(dirname "$0")/lib.sh"

run1() {
  local limit=$1
  shift
  timeout --kill-after=5 "$limit" "$TPSERVE_BIN" "$@" >"$scratch/out" 2>"$scratch/err"
  status=$?
  out=$(cat "$scratch/out")
  err=$(cat "$scratch/err")
}

fixture="$TPSERVE_FIXTURES/qwen2_tied"
run1 120 bench --device cpu --model "$fixture" --tp 1,2 --batch 1,4 --prompt-len 8,16 --gen-len 8 \
  --iters 2 --warmup 1 --json "$scratch/sweep.json" --csv "$scratch/sweep.csv"
if [[ $status -ne 0 ]]; then
  fail "bench --tp 1,2 exited $status: $(tail -3 <<<"$err")"
else
  [[ $(grep -c 'of TP=' <<<"$out") -eq 2 ]] || fail "bench --tp 1,2: expected two shard sections: $out"
  python3 - "$scratch/sweep.json" "$scratch/sweep.csv" <<'PY' || fail "bench --tp 1,2: bad JSON/CSV"
import csv, json, sys
doc = json.load(open(sys.argv[1]))
assert doc["tp_sizes"] == [1, 2] and [s["tp"] for s in doc["shards"]] == [1, 2], doc["shards"]
# TP=2 halves the heads: its shard holds fewer weight bytes than the whole model.
assert doc["shards"][1]["shard_weight_bytes"] < doc["shards"][0]["shard_weight_bytes"], doc["shards"]
assert sorted((p["tp"], p["tokens"]) for p in doc["prefills"]) == [(1, 8), (1, 16), (2, 8), (2, 16)]
rows = list(csv.DictReader(open(sys.argv[2])))
keys = sorted((int(r["tp"]), int(r["batch"]), int(r["prompt_len"]), int(r["gen_len"]), int(r["context"]))
              for r in rows)
# --gen-len 8 after prompts 8 and 16: contexts 8 + 4 and 16 + 4.
want = sorted((tp, b, p, 8, p + 4) for tp in (1, 2) for b in (1, 4) for p in (8, 16))
assert keys == want, (keys, want)
for r in rows:
    assert r["skipped"] == "0" and float(r["step_ms"]) > 0 and float(r["tokens_per_s"]) > 0, r
    assert int(r["bytes_per_step"]) == int(r["weight_bytes"]) + int(r["kv_bytes"]) + int(r["activation_bytes"]), r
    assert 0 < float(r["fraction_of_copy_bandwidth"]) and float(r["achieved_gbps"]) > 0, r
    assert abs(float(r["tokens_per_s"]) * float(r["step_ms"]) / 1e3 - int(r["batch"])) < 1e-2 * int(r["batch"]), r
assert len(doc["decode"]) == len(rows)
PY
  echo "ok: bench --tp 1,2 sweep"
fi

# The plot, where gnuplot is installed.
if command -v gnuplot >/dev/null; then
  bash "$(dirname "$0")/../../launch/plot_scaling.sh" "$scratch/sweep.csv" "$scratch/sweep.png" \
    >"$scratch/plot.out" 2>&1 || fail "plot_scaling.sh failed: $(cat "$scratch/plot.out")"
  [[ -s $scratch/sweep.png ]] && [[ $(head -c 8 "$scratch/sweep.png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] ||
    fail "plot_scaling.sh: no PNG written"
  echo "ok: plot_scaling.sh"
else
  echo "SKIP: plot_scaling.sh (gnuplot not installed: apt-get install gnuplot-nox)"
fi

# qwen2-72b at TP 2/4/8 with the default H100 NVLink assumptions.
run1 30 scale --preset qwen2-72b --tp 2,4,8 --batch 1,32 --context 1024 --json "$scratch/scale.json"
[[ $status -eq 0 ]] || fail "scale exited $status: $err"
for row in '^ +2 +67.71 GiB .* yes$' '^ +8 +16.93 GiB .* yes$'; do
  grep -Eq "$row" <<<"$out" || fail "scale: no memory row matching '$row': $out"
done
python3 - "$scratch/scale.json" <<'PY' || fail "scale: predictions not sane"
import json, sys
doc = json.load(open(sys.argv[1]))
p = {(r["tp"], r["batch"]): r for r in doc["predictions"]}
assert sorted(p) == [(n, b) for n in (2, 4, 8) for b in (1, 32)], sorted(p)
for (n, b), r in p.items():
    assert r["step_ms"] > 0 and abs(r["step_ms"] - r["compute_ms"] - r["comm_ms"]) < 1e-9, r
    assert abs(r["tokens_per_s"] - b * 1e3 / r["step_ms"]) < 1e-6 * r["tokens_per_s"], r
    assert r["all_reduces"] == 161 and not r["compute_measured"], r
for b in (1, 32):
    assert p[(2, b)]["compute_ms"] > p[(4, b)]["compute_ms"] > p[(8, b)]["compute_ms"], b
    assert p[(2, b)]["comm_ms"] < p[(4, b)]["comm_ms"] < p[(8, b)]["comm_ms"], b
PY
echo "ok: scale --preset qwen2-72b"

# Measured compute from the bench file replaces the roofline where the file has the row.
run1 30 scale --model "$fixture" --dtype f32 --tp 1,2 --batch 1 --context 12 --measured "$scratch/sweep.json"
[[ $status -eq 0 ]] && [[ $(grep -Ec '^ +[12] +1 +12 .* m ' <<<"$out") -eq 2 ]] ||
  fail "scale --measured: status $status, $out $err"
run1 30 scale --preset qwen2-72b --measured "$scratch/no-such.json"
[[ $status -ne 0 ]] && grep -q 'cannot read' <<<"$err" || fail "scale --measured missing file: $err"

run 2 60 scale --measure-comm --max-comm-bytes 65536
[[ $status -eq 0 ]] && grep -Eq '^ring fit: --link-gbps [0-9.]+ --link-latency-us [0-9.]+$' <<<"$out" ||
  fail "scale --measure-comm under mpirun -np 2: status $status, $out $err"
finish
