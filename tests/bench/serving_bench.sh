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
#              and 512: requests/s and inter-token latency of each. On the tiny qwen2_tied fixture
#              (a step takes well under a millisecond), so that the front ends' own costs show.
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
# best PREFIX FIELD max|min: the best value of FIELD over the reports $out/PREFIX-*.json.
best() {
  python3 -c 'import glob, json, sys; v = [json.load(open(f))[sys.argv[2]] for f in glob.glob(sys.argv[1] + "-*.json")]; print(round(max(v) if sys.argv[3] == "max" else min(v), 2))' \
    "$out/$1" "$2" "$3"
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
    echo "| concurrency | gRPC requests/s | HTTP requests/s | HTTP / gRPC | gRPC latency p50 ms | HTTP latency p50 ms | added ms per token |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    serve_model=$root/tests/fixtures/qwen2_tied
    start_server "$out/http.log" --kv-cache-mib 256 --max-seqs 512 --max-tokens-per-step 4096 \
      --no-enable-prefix-caching
    tokens=64
    for conc in 1 64 512; do
      requests=$((conc == 1 ? 256 : conc * 4))
      common=(--requests "$requests" --concurrency "$conc" --prompt-len 16 --output-len "$tokens" --spread 0)
      # Rounds alternate the front ends so that both see the same machine; the best round of each
      # counts (the least disturbed by other work).
      for round in 1 2 3; do
        load "grpc-$conc-$round" "${common[@]}"
        load "http-$conc-$round" "${common[@]}" --http "127.0.0.1:$http_port"
      done
      best grpc-$conc request_throughput max >"$out/grpc-$conc.best"
      best http-$conc request_throughput max >"$out/http-$conc.best"
      g=$(cat "$out/grpc-$conc.best") h=$(cat "$out/http-$conc.best")
      gl=$(best grpc-$conc latency_p50_ms min) hl=$(best http-$conc latency_p50_ms min)
      # A request's latency is its tokens' generation and delivery: the difference over its
      # tokens is what the HTTP path adds to each (negative: HTTP was faster).
      echo "| $conc | $g | $h | $(ratio "$h" "$g") | $gl | $hl |" \
           "$(python3 -c "print(f'{($hl - $gl) / $tokens:.3f}')") |"
    done
    stop_server
    serve_model=$model
    ;;
  *) echo "unknown case $c" >&2; exit 2 ;;
  esac
done
