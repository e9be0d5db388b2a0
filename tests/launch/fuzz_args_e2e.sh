#!/usr/bin/env bash
# tests/fuzz/run.sh refuses a bad seconds argument, FUZZ_FORK, FUZZ_RUNS or FUZZ_TIMEOUT with exit 2
# and one line naming it, before it configures or builds anything (libFuzzer would take a
# non-number as 0 without a word).
source "$(dirname "$0")/lib.sh"
script=$(dirname "$0")/../fuzz/run.sh

# refused LABEL MESSAGE ARGS...: run.sh (with its environment as set) exits 2 saying MESSAGE.
refused() {
  local label=$1 message=$2
  shift 2
  local build=$scratch/build-$RANDOM
  FUZZ_BUILD_DIR=$build timeout 30 bash "$script" "$@" >"$scratch/out" 2>"$scratch/err"
  local status=$?
  if [[ $status -ne 2 ]] || [[ $(cat "$scratch/err") != "$message" ]] || [[ -e $build ]]; then
    fail "$label: status $status, stderr '$(cat "$scratch/err")'," \
      "build folder made: $([[ -e $build ]] && echo yes || echo no)"
  else
    echo "ok: $label"
  fi
}

FUZZ_FORK=two refused "FUZZ_FORK=two" "run.sh: FUZZ_FORK must be a positive integer, got 'two'" 8 chat_template
FUZZ_FORK=0 refused "FUZZ_FORK=0" "run.sh: FUZZ_FORK must be a positive integer, got '0'" 8 chat_template
FUZZ_RUNS=1e7 refused "FUZZ_RUNS=1e7" "run.sh: FUZZ_RUNS must be a positive integer, got '1e7'" 8 gguf
FUZZ_TIMEOUT=-1 refused "FUZZ_TIMEOUT=-1" "run.sh: FUZZ_TIMEOUT must be a positive integer, got '-1'" 8 gguf
refused "seconds 10m" "run.sh: the seconds per target must be a positive integer, got '10m'" 10m gguf
finish
