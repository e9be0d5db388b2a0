#!/usr/bin/env bash
# mpirun with the flags a single machine (and CI, as root, in a container) needs:
#   bash launch/mpirun.sh -np 2 build/launch/tpserve generate --model DIR --prompt-ids 1,2,3
# and across hosts over TCP (see below):
#   bash launch/mpirun.sh --hostfile hosts -np 4 build/launch/tpserve serve --model DIR
# On a cluster with a fast interconnect, your site's mpirun/srun settings may serve better.
#
# Stopping the job: SIGTERM to this script, or Ctrl-C, becomes SIGUSR1 to mpirun, which forwards
# it to every rank without ending the job; `tpserve serve` drains on it and exits 0 (other
# subcommands end at once). A second SIGTERM or Ctrl-C is passed to mpirun as it is, which ends the
# job now. (Open MPI's mpirun answers a SIGTERM of its own by forwarding it and killing the ranks
# a second later, too soon to drain; hence SIGUSR1.) The exit status is mpirun's.
#
# Several hosts (--hostfile/--machinefile/--host/-H, or a hostfile in OMPI_MCA_orte_default_hostfile):
# TCP between hosts as well as shared memory inside one, and TCP keepalive on Open MPI's own control
# connections (30 s idle, then 4 probes 5 s apart), so that a host whose network goes down ends
# the job about 20 s after tpserve's --step-timeout (default 30 s) has named the unreachable rank,
# instead of mpirun waiting on that host for the kernel's retransmission limit (~15 minutes) with
# its daemon left running there. OMPI_MCA_oob_tcp_keepalive_* and OMPI_MCA_btl in the environment
# override these. (tests/launch/multinode_e2e.sh runs this over network namespaces.)
set -euo pipefail
btl=self,vader
multi_host=${OMPI_MCA_orte_default_hostfile:+1}
for arg in "$@"; do
  case $arg in --hostfile|--machinefile|--host|-H|--hostfile=*|--host=*) multi_host=1 ;; esac
done
flags=(--oversubscribe --bind-to none --mca btl_vader_single_copy_mechanism none)
if [[ -n $multi_host ]]; then
  btl=self,vader,tcp
  [[ -n ${OMPI_MCA_oob_tcp_keepalive_time:-} ]] || flags+=(--mca oob_tcp_keepalive_time 30)
  [[ -n ${OMPI_MCA_oob_tcp_keepalive_intvl:-} ]] || flags+=(--mca oob_tcp_keepalive_intvl 5)
  [[ -n ${OMPI_MCA_oob_tcp_keepalive_probes:-} ]] || flags+=(--mca oob_tcp_keepalive_probes 4)
fi
[[ -n ${OMPI_MCA_btl:-} ]] || flags+=(--mca btl "$btl")
[[ $(id -u) -eq 0 ]] && flags+=(--allow-run-as-root)
# Across hosts, a rank that ends the job (a peer it cannot reach, an error) first notes its exit
# status in a file (TPSERVE_ABORT_FILE, passed to the ranks); if mpirun is still waiting on an
# unreachable host's daemon 10 s later, this script ends mpirun (and the ssh clients of its session)
# and exits with that status instead of hanging for the kernel's TCP retransmission limit.
abort_file=""
if [[ -n $multi_host ]]; then
  abort_file=$(mktemp "${TMPDIR:-/tmp}/tpserve-abort.XXXXXX")
  export TPSERVE_ABORT_FILE=$abort_file
  flags+=(-x TPSERVE_ABORT_FILE)
fi
abort_grace=10  # seconds
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
if [[ -z $abort_file ]]; then
  # `wait` returns early (status > 128) when a trapped signal arrives; wait again until mpirun ends.
  while :; do
    set +e
    wait "$mpirun_pid"
    status=$?
    set -e
    kill -0 "$mpirun_pid" 2>/dev/null || exit "$status"
  done
fi
aborted_at=""
while kill -0 "$mpirun_pid" 2>/dev/null; do
  if [[ -z $aborted_at && -s $abort_file ]]; then aborted_at=$SECONDS; fi
  if [[ -n $aborted_at ]] && ((SECONDS - aborted_at >= abort_grace)); then
    status=$(head -n 1 "$abort_file")
    echo "mpirun.sh: a rank ended the job (status $status) ${abort_grace} s ago and mpirun is still" \
      "waiting on a host it cannot reach; ending mpirun" >&2
    kill -KILL -- -"$mpirun_pid" 2>/dev/null || true
    rm -f "$abort_file"
    exit "$status"
  fi
  sleep 0.2
done
set +e
wait "$mpirun_pid"
status=$?
rm -f "$abort_file"
exit "$status"
