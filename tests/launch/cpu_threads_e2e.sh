#!/usr/bin/env bash
# A rank confined to fewer cores than its share of the host (mpirun's default --bind-to core for
# one or two ranks; here `taskset -c 0` around an unbound mpirun) says so in one warning naming
# the cores and how to launch instead, and caps its default thread count to them; so does one
# asked for 2 threads (OPENBLAS_NUM_THREADS=2) on one core; with OPENBLAS_NUM_THREADS=1 asked for,
# or with no binding, there is no warning.
source "$(dirname "$0")/lib.sh"

cores=$(nproc --all)
if ((cores < 2)); then
  echo "SKIP: one core on this host: no rank can be confined to fewer"
  finish
fi
model=$TPSERVE_FIXTURES/qwen2_tied
args=(generate --model "$model" --prompt-ids 1,17,300 --max-tokens 2 --ignore-eos --no-progress)

warning="this rank may run on only 1 of the host's $cores cores"
env -u OPENBLAS_NUM_THREADS taskset -c 0 timeout --kill-after=5 60 $TPSERVE_MPIRUN -np 1 \
  "$TPSERVE_BIN" "${args[@]}" </dev/null >"$scratch/out" 2>"$scratch/err"
status=$?
[[ $status -eq 0 ]] || fail "confined run failed: $(tail -3 "$scratch/err")"
grep -q "$warning" "$scratch/err" && grep -q "mpirun --bind-to none" "$scratch/err" ||
  fail "no warning for a rank confined to one core: $(grep -i warn "$scratch/err")"

OPENBLAS_NUM_THREADS=2 taskset -c 0 timeout --kill-after=5 60 $TPSERVE_MPIRUN -np 1 -x OPENBLAS_NUM_THREADS \
  "$TPSERVE_BIN" "${args[@]}" </dev/null >"$scratch/out" 2>"$scratch/err"
grep -q "$warning" "$scratch/err" || fail "no warning for OPENBLAS_NUM_THREADS=2 on one core: $(grep -i warn "$scratch/err")"

OPENBLAS_NUM_THREADS=1 taskset -c 0 timeout --kill-after=5 60 $TPSERVE_MPIRUN -np 1 -x OPENBLAS_NUM_THREADS \
  "$TPSERVE_BIN" "${args[@]}" </dev/null >"$scratch/out" 2>"$scratch/err"
! grep -q "may run on only" "$scratch/err" || fail "warning with OPENBLAS_NUM_THREADS=1: $(grep warn "$scratch/err")"

env -u OPENBLAS_NUM_THREADS timeout --kill-after=5 60 $TPSERVE_MPIRUN -np 1 "$TPSERVE_BIN" "${args[@]}" \
  </dev/null >"$scratch/out" 2>"$scratch/err"
! grep -q "may run on only" "$scratch/err" || fail "warning without any binding: $(grep warn "$scratch/err")"
echo "ok: confinement warning"
finish
