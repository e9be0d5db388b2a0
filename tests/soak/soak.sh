#!/usr/bin/env bash
# Soak: `tpserve serve` at np 2 on a fixture model, loopback only, under mixed streaming, unary
# and client-cancelled requests at a fraction of its measured capacity, for a bounded time.
# Reports requests, failures, RSS drift per rank (after a warm-up) and KV blocks still used at the
# end (leaks). Exit 0 iff no failure, no leaked block and every rank's RSS drift under 1%.
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
# The ranks: rank 0's pid is on the serving line; its siblings are mpirun's other children.
rank0=$(sed -E 's/.*pid ([0-9]+)\).*/\1/' <<<"$line")
mpirun_pid=$(ps -o ppid= -p "$rank0" | tr -d ' ')
mapfile -t ranks < <(echo "$rank0"; ps -o pid= --ppid "$mpirun_pid" | tr -d ' ' | grep -vx "$rank0")
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# Capacity: closed-loop at 16 in flight, with the soak's mean lengths. This is also the warm-up
# (thread pools, allocator arenas, KV pool touched), so RSS is measured from after it.
"$tpserve" bench-serve --addr "$addr" --requests 96 --concurrency 16 --prompt-len 16 \
  --output-len 16 --spread 0.5 --json "$out/capacity.json" >"$out/capacity.txt" || {
  echo "soak: the capacity run failed" >&2; cat "$out/capacity.txt" >&2; exit 1; }
capacity=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["request_throughput"])' "$out/capacity.json")
rate=$(python3 -c "print(round($capacity * $load, 3))")
declare -A rss_start
for pid in "${ranks[@]}"; do rss_start[$pid]=$(rss "$pid"); done

"$client" --addr "$addr" --seconds "$seconds" --rate "$rate" --prompt-len 16 --output-len 16 \
  >"$out/soak.json"
client_status=$?

status=$client_status
summary=$(python3 - "$out/soak.json" "$capacity" "$load" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"capacity {float(sys.argv[2]):.2f} req/s; soak at {float(sys.argv[3])*100:.0f}% = {r['rate']} req/s "
      f"for {r['seconds']:.0f} s: {r['requests']} requests ({r['ok']} ok, {r['cancelled']} cancelled, "
      f"{r['failed']} failed, {r['late_starts']} started late); after: {r['in_flight_after']} in flight, "
      f"{r['kv_blocks_used_after']} of {r['kv_blocks_total']} KV blocks used")
for f in r["first_failures"]: print("  failure:", f)
PY
)
echo "$summary"
for i in "${!ranks[@]}"; do
  pid=${ranks[$i]}
  end=$(rss "$pid")
  drift=$(python3 -c "print(f'{($end - ${rss_start[$pid]}) / ${rss_start[$pid]} * 100:+.2f}')")
  echo "$( ((i == 0)) && echo "rank 0" || echo "rank $i of the others") (pid $pid): RSS ${rss_start[$pid]} -> $end KiB ($drift%)"
  python3 -c "import sys; sys.exit(0 if abs($drift) < 1.0 else 1)" || status=1
done
echo "command: bash tests/soak/soak.sh $seconds $load; logs in $out"
exit "$status"
