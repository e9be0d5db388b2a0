# Helpers for the end-to-end tests. Environment (set by ctest): TPSERVE_BIN, TPSERVE_FIXTURES,
# TPSERVE_MPIRUN (mpirun with the flags CI needs).
set -uo pipefail
: "${TPSERVE_BIN:?}" "${TPSERVE_FIXTURES:?}" "${TPSERVE_MPIRUN:?}"
export OPENBLAS_NUM_THREADS=1
failures=0
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

# run NP TIMEOUT ARGS...: runs tpserve under mpirun; sets $status, $out, $err.
run() {
  local np=$1 limit=$2
  shift 2
  # </dev/null: mpirun forwards stdin to rank 0, and would swallow the rest of a caller's
  # `while read` loop (only a fixture's first reference line was ever checked).
  timeout --kill-after=5 "$limit" $TPSERVE_MPIRUN -np "$np" "$TPSERVE_BIN" "$@" \
    </dev/null >"$scratch/out" 2>"$scratch/err"
  status=$?
  out=$(cat "$scratch/out")
  err=$(cat "$scratch/err")
}

# expect_tokens LABEL EXPECTED: the last run succeeded and printed "tokens: EXPECTED".
expect_tokens() {
  local got
  got=$(grep '^tokens: ' <<<"$out" | cut -d' ' -f2)
  if [[ $status -ne 0 || "$got" != "$2" ]]; then
    fail "$1: status $status, got '$got', expected '$2'"
    echo "$err" | tail -5
  else
    echo "ok: $1"
  fi
}

# check_greedy LABEL REFERENCE "NP..." ARGS...: for each "prompt expected" line of REFERENCE and
# each NP, `tpserve generate ARGS` of the prompt (16 tokens, prefill chunked to 5) under mpirun -np
# NP must print transformers' (or peft's) EXPECTED ids.
check_greedy() {
  local label=$1 reference=$2 nps=$3
  shift 3
  while read -r prompt expected; do
    for np in $nps; do
      run "$np" 120 generate "$@" --prompt-ids "$prompt" --max-tokens 16 --ignore-eos \
        --block-size 4 --max-tokens-per-step 5
      expect_tokens "$label np=$np prompt=$prompt" "$expected"
    done
  done <"$reference"
}

# check_fixture NAME NP...: check_greedy of a fixture against its reference_greedy.txt.
check_fixture() {
  local name=$1
  shift
  check_greedy "$name" "$TPSERVE_FIXTURES/$name/reference_greedy.txt" "$*" --model "$TPSERVE_FIXTURES/$name"
}

# expect_refusal NAME PATTERN: the last run failed (not by timeout) and its stderr ($err) matches
# PATTERN; prints the matching line.
expect_refusal() {
  local name=$1 pattern=$2
  if [[ $status -eq 0 ]]; then
    fail "$name: succeeded"
  elif [[ $status -eq 124 || $status -eq 137 ]]; then
    fail "$name: hung (killed by timeout)"
  elif ! grep -qE -- "$pattern" <<<"$err"; then
    fail "$name: stderr does not match '$pattern':"
    echo "$err" | head -5
  else
    echo "ok: $name -> $(grep -E -m1 -- "$pattern" <<<"$err")"
  fi
}

finish() {
  if ((failures)); then
    echo "$failures check(s) failed"
    exit 1
  fi
  echo "all checks passed"
}
