#!/usr/bin/env bash
# `tpserve doctor` under mpirun: one table row per rank, a checked all-reduce, exit 0; and on a
# machine without a GPU, --device cuda stops every rank with the reason.
source "$(dirname "$0")/lib.sh"

run 2 60 doctor --bandwidth-mib 1
rows=$(grep -cE '^[01] +[^ ]+ +[01]/2 ' <<<"$out")
if [[ $status -ne 0 || $rows -ne 2 ]] || ! grep -q "all-reduce (mpi, host)  f32: 1 float .* ok$" <<<"$out" ||
   ! grep -q "doctor: all checks passed" <<<"$out"; then
  fail "doctor np=2: status $status, $rows rows: $out"
else
  echo "ok: doctor np=2 -> $(grep 'all-reduce' <<<"$out")"
fi

run 1 60 doctor --bandwidth-mib 1
grep -q "one rank, nothing to time: ok" <<<"$out" || fail "doctor np=1: $out"

if ! nvidia-smi -L >/dev/null 2>&1; then
  run 2 60 doctor --device cuda
  if [[ $status -eq 0 || $status -ge 124 ]] || ! grep -q "no CUDA device on" <<<"$err"; then
    fail "doctor --device cuda without a GPU: status $status: $err"
  else
    echo "ok: doctor --device cuda without a GPU -> $(grep -m1 'no CUDA device' <<<"$err")"
  fi
fi
finish
