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
