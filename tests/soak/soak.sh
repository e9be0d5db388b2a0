#!/usr/bin/env bash
# Soak: `tpserve serve` at np 2 on a fixture model, loopback only, under mixed streaming, unary
# and client-cancelled requests at a fraction of its measured capacity, for a bounded time.
# Reports requests, failures, RSS drift per rank (idle after the second half against idle after
# the first) and KV blocks still used at the end (leaks). Exit 0 iff no failure, no leaked block
# and every rank's RSS drift under 1%.
#
#   bash tests/soak/soak.sh [SECONDS=600] [LOAD=0.8]    # from the repository root, after a build
#
# Environment: BUILD (default build), MODEL (default tests/fixtures/qwen2_tied), OUT (a directory
# for the logs and soak.json; default a temporary one).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
seconds=${1:-600}
load=${2:-0.8}
build=${BUILD:-$root/build}
model=${MODEL:-$root/tests/fixtures/qwen2_tied}
out=${OUT:-$(mktemp -d)}
tpserve=$build/launch/tpserve
client=$build/tests/tpserve_soak_client
export OPENBLAS_NUM_THREADS=1
for binary in "$tpserve" "$client"; do
  [[ -x $binary ]] || { echo "soak: $binary is missing (build first)" >&2; exit 2; }
done

bash "$root/launch/mpirun.sh" -np 2 "$tpserve" serve --model "$model" --port 0 --max-seqs 16 \
  >"$out/serve.out" 2>"$out/serve.err" &
job=$!
stop_job() {
  kill -TERM "$job" 2>/dev/null  # mpirun.sh: drain, then every rank exits
  for _ in $(seq 600); do kill -0 "$job" 2>/dev/null || break; sleep 0.1; done
  wait "$job" 2>/dev/null
}
trap stop_job EXIT
for _ in $(seq 600); do grep -q serving "$out/serve.out" && break; sleep 0.1; done
line=$(grep -m1 serving "$out/serve.out") || { echo "soak: the server did not start" >&2; cat "$out/serve.err" >&2; exit 1; }
port=$(sed -E 's/.* on [^:]+:([0-9]+) .*/\1/' <<<"$line")
addr=127.0.0.1:$port
# The ranks: rank 0's pid is on the serving line; its siblings are mpirun's other children (np 2:
# rank 1; with more, the order of the others is not their rank).
rank0=$(sed -E 's/.*pid ([0-9]+)\).*/\1/' <<<"$line")
mpirun_pid=$(ps -o ppid= -p "$rank0" | tr -d ' ')
mapfile -t ranks < <(echo "$rank0"; ps -o pid= --ppid "$mpirun_pid" | tr -d ' ' | grep -vx "$rank0")
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# Capacity: closed-loop at 16 in flight, with the soak's mean lengths. This also warms the server up
# (thread pools, allocator arenas, the KV pool touched).
"$tpserve" bench-serve --addr "$addr" --requests 480 --concurrency 16 --prompt-len 16 \
  --output-len 16 --spread 0.5 --json "$out/capacity.json" >"$out/capacity.txt" || {
  echo "soak: the capacity run failed" >&2; cat "$out/capacity.txt" >&2; exit 1; }
capacity=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["request_throughput"])' "$out/capacity.json")
rate=$(python3 -c "print(round($capacity * $load, 3))")

# Two halves of --seconds / 2, each followed by 3 s idle and an RSS sample of every rank. Drift is
# idle RSS after the second half against idle RSS after the first: both follow the same load, so
# thread pools and malloc arenas (grown during the first half) cancel out and a leak does not.
# While the client runs, RSS is also sampled every 5 s (rss.csv: seconds, then KiB per rank).
half=$(python3 -c "print($seconds / 2)")
start=$SECONDS
client_status=0
for part in 1 2; do
  "$client" --addr "$addr" --seconds "$half" --rate "$rate" --prompt-len 16 --output-len 16 \
    --seed "$part" >"$out/soak$part.json" &
  client_pid=$!
  while kill -0 "$client_pid" 2>/dev/null; do
    row=$((SECONDS - start))
    for pid in "${ranks[@]}"; do row+=",$(rss "$pid")"; done
    echo "$row" >>"$out/rss.csv"
    sleep 5
  done
  wait "$client_pid" || client_status=1
  sleep 3
  row=$((SECONDS - start))
  for pid in "${ranks[@]}"; do row+=",$(rss "$pid")"; done
  echo "$row" >"$out/idle$part.csv"
done
python3 - "$out/soak1.json" "$out/soak2.json" >"$out/soak.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
merged = dict(b)
for key in ("seconds", "requests", "ok", "cancelled", "failed", "late_starts"):
    merged[key] = a[key] + b[key]
merged["first_failures"] = a["first_failures"] + b["first_failures"]
print(json.dumps(merged))
PY

python3 - "$out/soak.json" "$out/idle1.csv" "$out/idle2.csv" "$out/rss.csv" "$capacity" "$load" "$client_status" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
idle1, idle2 = ([int(v) for v in open(p).read().strip().split(",")] for p in sys.argv[2:4])
rows = [list(map(int, line.split(","))) for line in open(sys.argv[4])]
capacity, load, client_status = float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
print(f"capacity {capacity:.2f} req/s; soak at {load * 100:.0f}% = {r['rate']} req/s for "
      f"{r['seconds']:.0f} s: {r['requests']} requests ({r['ok']} ok, {r['cancelled']} cancelled, "
      f"{r['failed']} failed, {r['late_starts']} started late); after: {r['in_flight_after']} in "
      f"flight, {r['kv_blocks_used_after']} of {r['kv_blocks_total']} KV blocks used")
for f in r["first_failures"]:
    print("  failure:", f)
ok = client_status == 0
for rank in range(1, len(idle1)):
    drift = (idle2[rank] - idle1[rank]) / idle1[rank] * 100
    print(f"rank {rank - 1}: idle RSS {idle1[rank]} KiB after the first half, {idle2[rank]} KiB after "
          f"the second: drift {drift:+.2f}% (under load {min(row[rank] for row in rows)}.."
          f"{max(row[rank] for row in rows)} KiB)")
    ok = ok and abs(drift) < 1.0
sys.exit(0 if ok else 1)
PY
status=$?
echo "command: bash tests/soak/soak.sh $seconds $load; logs and rss.csv in $out"
exit "$status"
