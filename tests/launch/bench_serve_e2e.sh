#!/usr/bin/env bash
# `tpserve bench-serve` against a served fixture (mpirun -np 2): streamed load over gRPC and over
# the HTTP API completes with every request; multi-turn chats (--turns) resend their history, so
# with a shared system prompt the server's prefix cache serves part of the later turns and the
# report has TTFT for first and later turns; --turns with --rate or --http is refused naming the
# flag. (tests/bench/serving_bench.sh uses the same tool for the measured benchmarks.)
source "$(dirname "$0")/lib.sh"

model=$TPSERVE_FIXTURES/qwen2_tied
timeout --kill-after=5 120 $TPSERVE_MPIRUN -np 2 "$TPSERVE_BIN" serve --model "$model" --port 0 \
  --http-port 0 --block-size 4 </dev/null >"$scratch/serve.out" 2>"$scratch/serve.err" &
server=$!
trap 'kill -TERM "$server" 2>/dev/null; rm -rf "$scratch"' EXIT
for _ in $(seq 600); do
  grep -q '^serving ' "$scratch/serve.out" && break
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done
line=$(grep '^serving ' "$scratch/serve.out") || { cat "$scratch/serve.err"; fail "serve did not start"; finish; }
port=$(sed -n 's/.* on [^:]*:\([0-9]*\) (.*/\1/p' <<<"$line")
http_port=$(sed -n 's/.*http port \([0-9]*\).*/\1/p' <<<"$line")

# bench NAME ARGS...: bench-serve into $scratch/NAME.json; sets $status and $out.
bench() {
  local name=$1
  shift
  out=$(timeout 60 "$TPSERVE_BIN" bench-serve --addr "127.0.0.1:$port" --json "$scratch/$name.json" "$@" 2>&1)
  status=$?
}
# json NAME EXPR: a Python expression over the report r.
json() { python3 -c "import json, sys; r = json.load(open(sys.argv[1])); print($2)" "$scratch/$1.json"; }

bench grpc --requests 12 --concurrency 4 --prompt-len 6 --output-len 5
[[ $status -eq 0 && $(json grpc 'r["failed"], r["front_end"]') == "0 grpc" ]] || fail "gRPC load: $out"
bench http --requests 12 --concurrency 4 --prompt-len 6 --output-len 5 --http "127.0.0.1:$http_port"
[[ $status -eq 0 && $(json http 'r["failed"], r["front_end"]') == "0 http" ]] || fail "HTTP load: $out"

# 4 chats of 3 turns over a 12-token system prompt (3 blocks of 4): turns 2+ resend turn 1's
# prompt and reply, which the cache holds.
before=$(json grpc 'r["server_prefix_hit_tokens"]')
bench turns --requests 12 --turns 3 --concurrency 2 --shared-prefix 12 --prompt-len 6 --output-len 5
if [[ $status -ne 0 ]]; then
  fail "--turns load: $out"
else
  [[ $(json turns 'r["failed"], r["turns"]') == "0 3" ]] || fail "--turns report: $(cat "$scratch/turns.json")"
  [[ $(json turns 'r["ttft_first_turn_p50_ms"] > 0 and r["ttft_later_turns_p50_ms"] > 0') == True ]] ||
    fail "--turns: no TTFT of first and later turns: $(cat "$scratch/turns.json")"
  grep -q '^ttft turns 2+ ' <<<"$out" || fail "--turns: no later-turns TTFT line: $out"
  # Every later turn's prompt is longer than the earlier one's prompt and reply (the history).
  [[ $(json turns 'r["server_prefix_hit_tokens"]') -gt $before ]] || fail "--turns: no prefix cache hits: $out"
  echo "ok: --turns: $(grep '^ttft turn' <<<"$out" | tr '\n' ' ')"
fi

bench refused --turns 2 --rate 5
[[ $status -ne 0 && $out == *"--turns 2 runs over gRPC at a fixed --concurrency"*"drop --rate"* ]] ||
  fail "--turns with --rate: status $status: $out"
bench refused --turns 2 --http "127.0.0.1:$http_port"
[[ $status -ne 0 && $out == *"drop --http"* ]] || fail "--turns with --http: status $status: $out"

finish
