#!/usr/bin/env bash
# Serving benchmarks for KV on demand, prefix caching and n-gram speculation (issue 17), and for the
# HTTP front end against gRPC (issue 14). Each case starts `tpserve serve` twice on the same model
# and KV budget, once with the feature off and once on, loads it with `tpserve bench-serve` and
# prints one table row; the bench-serve reports go to $OUT (JSON). Not a test: nothing is asserted.
#
#   tests/bench/serving_bench.sh [--tpserve BIN] [--np N] [--out DIR] [CASE...]
#
# Cases (default: admission prefix http):
#   admission  replies much shorter than max_tokens (random stop ids; max_tokens 512) at a fixed KV
#              budget: --kv-admission reserve against on-demand; requests/s and sequences per step
#   prefix     multi-turn chats sharing a system prompt (bench-serve --turns): prefix caching off
#              against on; TTFT of first turns and of turns 2+
#   http       the same streamed load over gRPC and over the OpenAI HTTP API at concurrency 1, 64
#              and 512: requests/s, latency and rank 0's CPU time per streamed token of each,
#              medians over HTTP_ROUNDS (default 5) alternated rounds. On the tiny qwen2_tied
#              fixture (a step takes well under a millisecond), so that the front ends' own costs
#              show.
# The model of the other cases is tests/bench/make_kv_bench_model.py's random Qwen2 (6 layers,
# hidden 512, made once under $OUT). OPENBLAS_NUM_THREADS=1 per rank.
# N-gram speculation needs a model whose replies copy its prompt: tests/bench/ngram_bench.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tpserve=$root/build-cpu/launch/tpserve
np=1
out=${TMPDIR:-/tmp}/tpserve-serving-bench
while (($#)); do
  case $1 in
    --tpserve) tpserve=$2; shift 2 ;;
    --np) np=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
cases=("$@")
((${#cases[@]})) || cases=(admission prefix http)
[[ $np =~ ^[1-9][0-9]*$ ]] || { echo "--np must be a positive integer, got '$np'" >&2; exit 2; }
[[ ${HTTP_ROUNDS:-5} =~ ^[1-9][0-9]*$ ]] ||
  { echo "HTTP_ROUNDS must be a positive integer, got '$HTTP_ROUNDS'" >&2; exit 2; }
for c in "${cases[@]}"; do
  case $c in
    admission|prefix|http) ;;
    *) echo "unknown case '$c' (admission, prefix, http)" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
model=$out/kvbench
[[ -f $model/model.safetensors ]] ||
  python3 "$root/tests/bench/make_kv_bench_model.py" "$model" "$root/tests/fixtures/qwen2_tied"
port=$((20000 + RANDOM % 20000))
http_port=$((port + 1))
server_pid=

# start_server LOG ARGS...: serve $serve_model on $port (and $http_port), wait until it serves.
serve_model=$model
start_server() {
  local log=$1
  shift
  OPENBLAS_NUM_THREADS=1 bash "$root/launch/mpirun.sh" -np "$np" -x OPENBLAS_NUM_THREADS \
    "$tpserve" serve --model "$serve_model" --port "$port" --http-port "$http_port" \
    --max-queued 4096 "$@" >"$log" 2>&1 &
  server_pid=$!
  for _ in $(seq 600); do
    grep -q '^serving ' "$log" && return 0
    kill -0 "$server_pid" 2>/dev/null || { echo "serve failed:" >&2; tail -5 "$log" >&2; exit 1; }
    sleep 0.1
  done
  echo "serve did not start in 60 s" >&2
  exit 1
}
stop_server() {
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}
trap stop_server EXIT

# load NAME ARGS...: bench-serve against the running server, its report in $out/NAME.json.
load() {
  local name=$1
  shift
  "$tpserve" bench-serve --addr "127.0.0.1:$port" --json "$out/$name.json" "$@" >"$out/$name.txt"
}
field() {
  python3 -c 'import json, sys; v = json.load(open(sys.argv[1]))[sys.argv[2]]; print(round(v, 2) if isinstance(v, float) else v)' \
    "$out/$1.json" "$2"
}
ratio() { python3 -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]):.2f}")' "$1" "$2"; }

echo "tpserve $(git -C "$root" rev-parse --short HEAD) np $np; $(nproc) cores: $(lscpu | sed -n 's/^Model name: *//p')"
for c in "${cases[@]}"; do
  case $c in
  admission)
    # 6144 bytes of KV a position: 24 MiB is 4096 positions, room for 7 requests reserving
    # 64 + 512 but for ~40 at their real length (~64 + 32 tokens).
    common=(--requests 256 --concurrency 64 --prompt-len 16 --output-len 32 --stop-ids 16 --max-tokens 512)
    echo "| admission | requests/s | output tok/s | TTFT p50 ms | steps | preemptions |"
    echo "| --- | --- | --- | --- | --- | --- |"
    for policy in reserve on-demand; do
      start_server "$out/admission-$policy.log" --kv-cache-mib 24 --max-seqs 64 --kv-admission "$policy" \
        --no-enable-prefix-caching
      load "admission-$policy" "${common[@]}"
      stop_server
      echo "| $policy | $(field admission-$policy request_throughput) | $(field admission-$policy output_tokens_per_s) |" \
           "$(field admission-$policy ttft_p50_ms) | $(field admission-$policy server_steps) |" \
           "$(field admission-$policy server_preemptions) |"
    done
    echo "on-demand / reserve requests/s: $(ratio "$(field admission-on-demand request_throughput)" \
                                                   "$(field admission-reserve request_throughput)")"
    ;;
  prefix)
    # 16 chats of 4 turns, 8 at a time: a 256-token system prompt, 48 new tokens and a 24-token
    # reply per turn.
    common=(--requests 64 --turns 4 --concurrency 8 --shared-prefix 256 --prompt-len 48 --output-len 24)
    echo "| prefix caching | TTFT turn 1 p50 / p99 ms | TTFT turns 2+ p50 / p99 ms | requests/s | cached prompt tokens |"
    echo "| --- | --- | --- | --- | --- |"
    for mode in off on; do
      flag=--no-enable-prefix-caching
      [[ $mode == on ]] && flag=--enable-prefix-caching
      start_server "$out/prefix-$mode.log" --kv-cache-mib 64 "$flag"
      load "prefix-$mode" "${common[@]}"
      stop_server
      echo "| $mode | $(field prefix-$mode ttft_first_turn_p50_ms) / $(field prefix-$mode ttft_first_turn_p99_ms) |" \
           "$(field prefix-$mode ttft_later_turns_p50_ms) / $(field prefix-$mode ttft_later_turns_p99_ms) |" \
           "$(field prefix-$mode request_throughput) | $(field prefix-$mode server_prefix_hit_tokens) of" \
           "$(field prefix-$mode server_prefix_query_tokens) |"
    done
    echo "TTFT turns 2+ p50, off / on: $(ratio "$(field prefix-off ttft_later_turns_p50_ms)" \
                                               "$(field prefix-on ttft_later_turns_p50_ms)")"
    ;;
  http)
    # Rounds alternate the front ends so that both see the same machine; on a shared 2-core VM one
    # round can be 2-3x slower than the next, so each figure is the median over the rounds
    # (HTTP_ROUNDS, default 5), with the slowest and fastest round beside it. Server CPU per token
    # is rank 0's user + system time (/proc) over the tokens streamed in the round: what each front
    # end costs the server, independent of how the client shared the cores.
    echo "| concurrency | gRPC requests/s median (min-max) | HTTP requests/s median (min-max) | HTTP / gRPC | latency p50 gRPC / HTTP ms | HTTP's added ms per token | server CPU us per token gRPC / HTTP |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    serve_model=$root/tests/fixtures/qwen2_tied
    start_server "$out/http.log" --kv-cache-mib 256 --max-seqs 512 --max-tokens-per-step 4096 \
      --no-enable-prefix-caching
    rank0=$(pgrep -x tpserve -a | awk -v port="--port $port " 'index($0, port) {print $1; exit}')
    cpu_ticks() { awk '{print $14 + $15}' "/proc/$rank0/stat"; }
    tokens=64
    rounds=${HTTP_ROUNDS:-5}
    for conc in 1 64 512; do
      requests=$((conc == 1 ? 256 : conc * 4))
      common=(--requests "$requests" --concurrency "$conc" --prompt-len 16 --output-len "$tokens" --spread 0)
      for round in $(seq "$rounds"); do
        for fe in grpc http; do
          extra=()
          [[ $fe == http ]] && extra=(--http "127.0.0.1:$http_port")
          before=$(cpu_ticks)
          load "$fe-$conc-$round" "${common[@]}" "${extra[@]}"
          echo $(($(cpu_ticks) - before)) >"$out/$fe-$conc-$round.ticks"
        done
      done
      summary=$(python3 - "$out" "$conc" "$requests" "$tokens" "$(getconf CLK_TCK)" <<'PY'
import glob, json, statistics, sys
out, conc, requests, tokens, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def rounds(fe, field):
    return [json.load(open(f))[field] for f in sorted(glob.glob(f"{out}/{fe}-{conc}-*.json"))]
def cpu_us(fe):
    ticks = [int(open(f).read()) for f in glob.glob(f"{out}/{fe}-{conc}-*.ticks")]
    return statistics.median(ticks) / hz * 1e6 / (requests * tokens)
g, h = rounds("grpc", "request_throughput"), rounds("http", "request_throughput")
gl, hl = statistics.median(rounds("grpc", "latency_p50_ms")), statistics.median(rounds("http", "latency_p50_ms"))
gm, hm = statistics.median(g), statistics.median(h)
# A request's latency is its tokens' generation and delivery: the difference over its tokens is
# what the HTTP path adds to each (negative: HTTP was faster).
print(f"| {conc} | {gm:.1f} ({min(g):.1f}-{max(g):.1f}) | {hm:.1f} ({min(h):.1f}-{max(h):.1f}) | "
      f"{hm / gm:.2f} | {gl:.1f} / {hl:.1f} | {(hl - gl) / tokens:+.3f} | {cpu_us('grpc'):.0f} / {cpu_us('http'):.0f} |")
PY
)
      echo "$summary"
    done
    stop_server
    serve_model=$model
    ;;
  esac
done
