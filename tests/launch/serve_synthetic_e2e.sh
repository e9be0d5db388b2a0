#!/usr/bin/env bash
# `tpserve serve --synthetic PRESET`: a shape preset served with random weights and no tokenizer
# (load tests at real scale without a checkpoint). Here a tiny preset (qwen2_tied's config.json,
# found through TPSERVE_CONFIGS) at np 2, and GPTQ-int4-quantized at np 1: token-id requests
# complete over gRPC (bench-serve) and HTTP; a text prompt is refused naming the missing
# tokenizer; --synthetic with --model, with --lora, an unknown preset, --quant without
# --synthetic, an unknown --quant and a bad --group-size are refused by name.
source "$(dirname "$0")/lib.sh"

mkdir -p "$scratch/configs/presets"
cp "$TPSERVE_FIXTURES/qwen2_tied/config.json" "$scratch/configs/presets/tiny.json"
export TPSERVE_CONFIGS=$scratch/configs

# serve_synthetic NAME NP ARGS...: starts a server; sets $server, $port, $http_port (or fails).
serve_synthetic() {
  local name=$1 np=$2
  shift 2
  timeout --kill-after=5 120 $TPSERVE_MPIRUN -np "$np" -x TPSERVE_CONFIGS "$TPSERVE_BIN" serve \
    --synthetic tiny --port 0 --http-port 0 --block-size 4 "$@" </dev/null \
    >"$scratch/$name.out" 2>"$scratch/$name.err" &
  server=$!
  for _ in $(seq 600); do
    grep -q '^serving ' "$scratch/$name.out" && break
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  local line
  line=$(grep '^serving ' "$scratch/$name.out") || { cat "$scratch/$name.err"; fail "$name: serve did not start"; return 1; }
  port=$(sed -n 's/.* on [^:]*:\([0-9]*\) (.*/\1/p' <<<"$line")
  http_port=$(sed -n 's/.*http port \([0-9]*\).*/\1/p' <<<"$line")
}

# check_load NAME: token-id load over gRPC and HTTP completes; a text prompt is refused.
check_load() {
  local name=$1 out
  out=$(timeout 60 "$TPSERVE_BIN" bench-serve --addr "127.0.0.1:$port" --requests 8 \
          --concurrency 4 --prompt-len 6 --output-len 5 --json "$scratch/$name.json" 2>&1)
  [[ $? -eq 0 && $(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['failed'], r['requests'])" "$scratch/$name.json") == "0 8" ]] ||
    fail "$name: gRPC load: $out"
  out=$(curl -s -X POST "http://127.0.0.1:$http_port/v1/completions" -H 'Content-Type: application/json' \
          -d '{"prompt": [1, 17, 300], "max_tokens": 4, "ignore_eos": true}')
  [[ $(python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(r['usage']['completion_tokens'], r['model'])" "$out" 2>/dev/null) == "4 tiny" ]] ||
    fail "$name: HTTP token-id completion: $out"
  out=$(curl -s -X POST "http://127.0.0.1:$http_port/v1/completions" -H 'Content-Type: application/json' \
          -d '{"prompt": "hello", "max_tokens": 4}')
  [[ $out == *tokenizer* ]] || fail "$name: a text prompt was not refused naming the tokenizer: $out"
  grep -q "synthetic tiny" "$scratch/$name.err" || fail "$name: no synthetic load line: $(tail -3 "$scratch/$name.err")"
  echo "ok: $name"
}

stop() { kill -TERM "$server" 2>/dev/null; wait "$server" 2>/dev/null; }
trap 'kill -TERM "$server" 2>/dev/null; rm -rf "$scratch"' EXIT

serve_synthetic float 2 && { check_load float; stop; }
serve_synthetic int4 1 --quant gptq-int4 --group-size 32 && {
  check_load int4
  grep -q "tiny gptq-int4 g32" "$scratch/int4.err" || fail "int4: the name does not say gptq-int4: $(grep synthetic "$scratch/int4.err")"
  stop
}

run 1 30 serve --synthetic tiny --model "$TPSERVE_FIXTURES/qwen2_tied" --port 0
[[ $status -ne 0 && $err == *"give exactly one of --model DIR and --synthetic PRESET"* ]] ||
  fail "--synthetic with --model: status $status: $err"
run 1 30 serve --synthetic tiny --lora "$TPSERVE_FIXTURES/qwen2_tied_lora" --port 0
[[ $status -ne 0 && $err == *"--lora merges into a checkpoint's weights"* ]] ||
  fail "--synthetic with --lora: status $status: $err"
run 1 30 serve --synthetic nosuch --port 0
[[ $status -ne 0 && $err == *"--synthetic: unknown preset 'nosuch'"*"tiny"* ]] ||
  fail "unknown preset: status $status: $err"
run 1 30 serve --model "$TPSERVE_FIXTURES/qwen2_tied" --quant gptq-int4 --port 0
[[ $status -ne 0 && $err == *"--quant and --group-size quantize a --synthetic preset"* ]] ||
  fail "--quant with --model: status $status: $err"
run 1 30 serve --synthetic tiny --quant gptq-int3 --port 0
[[ $status -ne 0 && $err == *"--quant"*"gptq-int3"* ]] || fail "--quant gptq-int3: status $status: $err"
run 1 30 serve --synthetic tiny --quant gptq-int4 --group-size 0 --port 0
[[ $status -ne 0 && $err == *"group"* ]] || fail "--group-size 0: status $status: $err"
echo "ok: refusals"
finish
