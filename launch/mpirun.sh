#!/usr/bin/env bash
# mpirun with the flags a single machine (and CI, as root, in a container) needs:
#   bash launch/mpirun.sh -np 2 build/launch/tpserve generate --model DIR --prompt-ids 1,2,3
# On a cluster use your site's mpirun/srun directly.
#
# Stopping the job: SIGTERM to this script, or Ctrl-C, becomes SIGUSR1 to mpirun, which forwards
# it to every rank without ending the job; `tpserve serve` drains on it and exits 0 (other
# subcommands end at once). A second SIGTERM or Ctrl-C is passed to mpirun as it is, which ends the
# job now. (Open MPI's mpirun answers a SIGTERM of its own by forwarding it and killing the ranks
# a second later, too soon to drain; hence SIGUSR1.) The exit status is mpirun's.
set -euo pipefail
flags=(--oversubscribe --bind-to none --mca btl self,vader --mca btl_vader_single_copy_mechanism none)
[[ $(id -u) -eq 0 ]] && flags+=(--allow-run-as-root)
# mpirun runs in a session of its own so that a terminal's Ctrl-C reaches this script only; stdin
# is passed on explicitly (a background job's would be /dev/null).
setsid mpirun "${flags[@]}" "$@" <&0 &
mpirun_pid=$!
signals=0
forward() {
  signals=$((signals + 1))
  if ((signals == 1)); then kill -USR1 "$mpirun_pid" 2>/dev/null || true
  else kill -"$1" "$mpirun_pid" 2>/dev/null || true; fi
}
trap 'forward TERM' TERM
trap 'forward INT' INT
# `wait` returns early (status > 128) when a trapped signal arrives; wait again until mpirun ends.
while :; do
  set +e
  wait "$mpirun_pid"
  status=$?
  set -e
  kill -0 "$mpirun_pid" 2>/dev/null || exit "$status"
done
