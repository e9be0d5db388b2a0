#!/usr/bin/env bash
# tests/bench/serving_bench.sh refuses a bad --np, HTTP_ROUNDS or case name with exit 2 and one
# line naming it, before it creates its output folder or starts a server.
source "$(dirname "$0")/lib.sh"
bench=$(dirname "$0")/../bench/serving_bench.sh

# refused LABEL MESSAGE ARGS...: the bench (with its environment as set) exits 2 saying MESSAGE.
refused() {
  local label=$1 message=$2
  shift 2
  local out_dir=$scratch/out-$RANDOM
  timeout 30 bash "$bench" --tpserve "$TPSERVE_BIN" --out "$out_dir" "$@" >"$scratch/out" 2>"$scratch/err"
  local status=$?
  if [[ $status -ne 2 ]] || ! grep -qF -- "$message" "$scratch/err" || [[ -e $out_dir ]]; then
    fail "$label: status $status, stderr '$(cat "$scratch/err")'," \
      "output folder made: $([[ -e $out_dir ]] && echo yes || echo no)"
  else
    echo "ok: $label"
  fi
}

refused "--np 0" "--np must be a positive integer, got '0'" --np 0 http
refused "--np x" "--np must be a positive integer, got 'x'" --np x http
HTTP_ROUNDS=0 refused "HTTP_ROUNDS=0" "HTTP_ROUNDS must be a positive integer, got '0'" http
HTTP_ROUNDS=five refused "HTTP_ROUNDS=five" "HTTP_ROUNDS must be a positive integer, got 'five'" http
refused "an unknown case" "unknown case 'htp' (admission, prefix, http)" admission htp
finish
