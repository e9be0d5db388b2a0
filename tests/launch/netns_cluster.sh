# A cluster of "nodes" on one machine, for the multi-node tests: each node is a Linux network
# namespace (tpserve-nI) with its own address 10.77.0.(11+I)/24 on a veth pair whose other end is
# on a bridge inside one more namespace (tpserve-sw), its own hostname nodeI (a UTS namespace per
# process started there) and an /etc/hosts naming every node. Open MPI reaches the nodes through
# netns_agent.sh as its rsh launch agent, over TCP only, so nothing passes between nodes but the
# bridge. Nothing outside these namespaces is ever contacted or changed (bar /etc/netns/tpserve-nI,
# which `ip netns exec` mounts over /etc, removed with the rest).
#
#   source netns_cluster.sh
#   cluster_up 4                          # or returns 77 (skip) when namespaces are not available
#   on_node 0 COMMAND...                  # a command on node0 (hostname node0, its network)
#   cluster_mpirun --host node0,node1 -np 2 tpserve ...   # launch/mpirun.sh from node0
#   cluster_down                          # kills what runs on the nodes, removes everything
cluster_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cluster_nodes=0

# cluster_available: prints why not and returns 1 when this machine cannot make namespaces.
cluster_available() {
  if [[ $(id -u) -ne 0 ]]; then
    echo "SKIP: network namespaces need root"
    return 1
  fi
  if ! command -v ip >/dev/null || ! ip netns add tpserve-probe 2>/dev/null; then
    echo "SKIP: cannot create a network namespace (ip netns add failed)"
    return 1
  fi
  ip netns del tpserve-probe
}

cluster_up() {
  local n=$1 i j
  cluster_down
  cluster_nodes=$n
  ip netns add tpserve-sw
  ip -n tpserve-sw link add br0 type bridge
  ip -n tpserve-sw link set br0 up
  for ((i = 0; i < n; i++)); do
    ip netns add "tpserve-n$i"
    ip link add "tpserve-v$i" type veth peer name eth0 netns "tpserve-n$i"
    ip link set "tpserve-v$i" netns tpserve-sw
    ip -n tpserve-sw link set "tpserve-v$i" master br0 up
    ip -n "tpserve-n$i" addr add "10.77.0.$((11 + i))/24" dev eth0
    ip -n "tpserve-n$i" link set eth0 up
    ip -n "tpserve-n$i" link set lo up
    # TCP gives up on an unreachable peer after ~12 s instead of ~15 minutes (tcp_retries2 15):
    # Open MPI 4's daemons wait that long for a host whose link is down (README, "Several hosts").
    ip netns exec "tpserve-n$i" sysctl -qw net.ipv4.tcp_retries2=5
    mkdir -p "/etc/netns/tpserve-n$i"
    {
      echo "127.0.0.1 localhost"
      for ((j = 0; j < n; j++)); do echo "10.77.0.$((11 + j)) node$j"; done
    } >"/etc/netns/tpserve-n$i/hosts"
  done
  # Open MPI: daemons through the agent, control and data over the bridge's subnet only.
  export OMPI_MCA_plm_rsh_agent=$cluster_dir/netns_agent.sh
  export OMPI_MCA_oob_tcp_if_include=10.77.0.0/24
  export OMPI_MCA_btl_tcp_if_include=10.77.0.0/24
}

# cluster_pids: every process still running on any node (none once a job has ended cleanly).
cluster_pids() {
  local i
  for ((i = 0; i < cluster_nodes; i++)); do ip netns pids "tpserve-n$i" 2>/dev/null; done
}

cluster_down() {
  local ns pid
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^tpserve-(sw|n[0-9]+)$'); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    ip netns del "$ns"
    rm -rf "/etc/netns/$ns"
  done
  cluster_nodes=0
}

# on_node I COMMAND...: COMMAND on node I, as that node (its network, hostname and /etc/hosts).
on_node() {
  local i=$1
  shift
  ip netns exec "tpserve-n$i" unshare --uts bash -c 'hostname "$0" && exec "$@"' "node$i" "$@"
}

# cluster_mpirun ARGS...: the project's launcher (launch/mpirun.sh) on node0 with ARGS, which name
# the hosts (--host/--hostfile) and the program.
cluster_mpirun() {
  on_node 0 bash "$cluster_dir/../../launch/mpirun.sh" "$@"
}

# link DOWN|UP I: takes node I's network interface down or up.
link() {
  ip -n "tpserve-n$2" link set eth0 "$(tr '[:upper:]' '[:lower:]' <<<"$1")"
}
