#!/usr/bin/env bash
# Open MPI's rsh launch agent for netns_cluster.sh: `netns_agent.sh nodeI COMMAND...` runs COMMAND
# (an orted) on node I, i.e. inside namespace tpserve-nI with hostname nodeI, as ssh would on a
# real cluster. Open MPI passes the remote command as words for a shell, like ssh. The daemon runs
# in a session of its own (setsid --wait), as a remote one would: ending mpirun's process group on
# node0 ends this agent (the "ssh client"), not the daemon.
host=$1
shift
[[ $host =~ ^node([0-9]+)$ ]] || { echo "netns_agent.sh: unknown host '$host'" >&2; exit 255; }
exec setsid --wait ip netns exec "tpserve-n${BASH_REMATCH[1]}" unshare --uts \
  bash -c 'hostname "$0" && eval "$1"' "$host" "$*"
