#!/usr/bin/env bash
# A real Slurm (Debian's slurmctld, slurmd, sbatch/srun/scancel) on a two-node namespace cluster
# (netns_cluster.sh): slurmctld on node0, a slurmd on each node, a minimal configuration (no
# cgroups, no munge: auth/none inside the private network). Submits launch/tpserve.sbatch as a user
# would — srun starts one rank per node over PMIx — and checks the job's exit code and that every
# result equals transformers'; then a `serve` job cancelled with scancel drains and ends. Skipped
# (exit 77) where namespaces or the Slurm packages are missing.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/netns_cluster.sh"
cluster_available || exit 77
for program in slurmctld slurmd sbatch srun scancel squeue sacct; do
  command -v $program >/dev/null || { echo "SKIP: $program not installed (Debian: slurmctld slurmd slurm-client)"; exit 77; }
done
cluster_up 2

root=$(cd "$cluster_dir/../.." && pwd)
model=$TPSERVE_FIXTURES/llama_gqa
reference=$model/reference_greedy.txt
# Slurm's state, the jobs' files and each node's own TmpFS (PMIx makes per-step directories there
# whose names do not say which node they are on: real nodes do not share a /tmp).
slurm=$(mktemp -d /var/tmp/tpserve-slurm.XXXXXX)
scratch_tmp=$scratch
trap 'cluster_down; rm -rf "$scratch_tmp" "$slurm"' EXIT
scratch=$slurm/jobs
mkdir -p "$slurm/state" "$scratch" "$slurm"/{spool,tmp}-node{0,1}
cpus=$(nproc)
cat >"$slurm/slurm.conf" <<EOF
ClusterName=tpserve-test
SlurmctldHost=node0(10.77.0.11)
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$slurm/state
SlurmdSpoolDir=$slurm/spool-%n
TmpFS=$slurm/tmp-%n
SlurmctldPidFile=$slurm/slurmctld.pid
SlurmdPidFile=$slurm/slurmd-%n.pid
SlurmctldLogFile=$slurm/slurmctld.log
SlurmdLogFile=$slurm/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
NodeName=node0 NodeAddr=10.77.0.11 CPUs=$cpus State=UNKNOWN
NodeName=node1 NodeAddr=10.77.0.12 CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=node[0-1] Default=YES MaxTime=INFINITE State=UP
EOF
# slurmd insists on a cgroup plugin, even with proctrack/linuxproc and task/none; this machine's
# processes sit in cgroup v1 hierarchies that are not mounted, so each slurmd gets its own v1
# mounts inside the mount namespace `ip netns exec` made for it (nothing outside changes).
echo "CgroupPlugin=cgroup/v1" >"$slurm/cgroup.conf"
cgroups='mount -t tmpfs cgroup_root /sys/fs/cgroup &&
  for c in freezer cpuset memory devices; do
    mkdir -p /sys/fs/cgroup/$c && mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c || exit 1
  done && exec "$@"'
export SLURM_CONF=$slurm/slurm.conf
on_node 0 slurmctld -D -i >"$slurm/slurmctld.out" 2>&1 &
for i in 0 1; do
  on_node $i bash -c "$cgroups" _ slurmd -D -N node$i >"$slurm/slurmd$i.out" 2>&1 &
done
ready=0
for _ in $(seq 150); do
  if [[ $(on_node 0 sinfo -h -o '%t' 2>/dev/null | sort -u) == idle ]]; then ready=1; break; fi
  sleep 0.2
done
if ((!ready)); then
  fail "Slurm did not come up: $(on_node 0 sinfo 2>&1 | tail -2)"
  tail -5 "$slurm/slurmctld.log" "$slurm"/slurmd-*.log 2>/dev/null
  finish
fi
echo "ok: slurmctld + 2 slurmd up: $(on_node 0 sinfo -h -o '%D nodes %t %P')"

# The batch job, through the project's own sbatch script: 2 nodes x 1 rank, CPU device.
python3 - "$reference" "$scratch/in.jsonl" <<'PY'
import json, sys
refs = [line.split() for line in open(sys.argv[1]) if line.strip()]
with open(sys.argv[2], "w") as f:
    for i, (prompt, _) in enumerate(refs):
        f.write(json.dumps({"id": f"r{i}", "prompt_ids": [int(t) for t in prompt.split(",")],
                            "temperature": 0, "max_tokens": 16, "ignore_eos": True}) + "\n")
PY
cd "$scratch"
timeout 180 ip netns exec tpserve-n0 env TPSERVE_BIN="$TPSERVE_BIN" TPSERVE_DEVICE=cpu \
  OPENBLAS_NUM_THREADS=1 sbatch --wait --nodes=2 --ntasks-per-node=1 --cpus-per-task=1 \
  --gpus-per-node=0 --output="$scratch/job-%j.log" "$root/launch/tpserve.sbatch" "$model" \
  "$scratch/in.jsonl" "$scratch/out.jsonl" >"$scratch/sbatch.out" 2>&1
status=$?
job=$(grep -oE '[0-9]+$' "$scratch/sbatch.out" | head -1)
if [[ $status -ne 0 ]]; then
  fail "sbatch launch/tpserve.sbatch: exit $status"
  cat "$scratch/sbatch.out"
  tail -n 15 "$scratch"/job-*.log "$slurm"/slurmd-*.log 2>/dev/null
elif python3 - "$reference" "$scratch/out.jsonl" <<'PY'; then
import json, sys
refs = [line.split() for line in open(sys.argv[1]) if line.strip()]
records = {r["id"]: r for r in map(json.loads, open(sys.argv[2]))}
for i, (_, expected) in enumerate(refs):
    got = ",".join(map(str, records[f"r{i}"]["choices"][0]["token_ids"]))
    if got != expected:
        sys.exit(f"r{i}: {got} != {expected}")
PY
  echo "ok: sbatch launch/tpserve.sbatch (job $job, 2 nodes): exit 0, $(wc -l <"$scratch/out.jsonl") results equal transformers'"
  grep -E '^(all-reduce|doctor)' "$scratch/job-$job.log"
else
  fail "sbatch launch/tpserve.sbatch: results differ from transformers'"
fi

# A serve job (srun, one rank per node) ended with scancel: it drains and exits 0 on every rank.
cat >"$scratch/serve.sbatch" <<EOF
#!/usr/bin/env bash
srun --mpi=\${SRUN_MPI:-pmix} "$TPSERVE_BIN" serve --model "$model" --port 50581 --metrics-port 0
EOF
ip netns exec tpserve-n0 env OPENBLAS_NUM_THREADS=1 sbatch --nodes=2 --ntasks-per-node=1 \
  --cpus-per-task=1 --output="$scratch/serve-%j.log" "$scratch/serve.sbatch" >"$scratch/sbatch.out" 2>&1
job=$(grep -oE '[0-9]+$' "$scratch/sbatch.out" | head -1)
for _ in $(seq 300); do grep -q '^serving' "$scratch/serve-$job.log" 2>/dev/null && break; sleep 0.1; done
if ! grep -q '^serving' "$scratch/serve-$job.log" 2>/dev/null; then
  fail "serve job $job did not start"
  tail -5 "$scratch/serve-$job.log" "$scratch/sbatch.out" 2>/dev/null
else
  echo hello | timeout 60 ip netns exec tpserve-n0 "$TPSERVE_BIN" chat --addr 127.0.0.1:50581 \
    --temperature 0 --max-tokens 8 >"$scratch/chat" 2>&1 || fail "chat with the serve job: $(tail -1 "$scratch/chat")"
  on_node 0 scancel "$job"
  state=""
  for _ in $(seq 300); do
    state=$(on_node 0 squeue -h -j "$job" -o %T 2>/dev/null)
    [[ -z $state ]] && break
    sleep 0.1
  done
  if [[ -n $state ]]; then
    fail "serve job $job still $state 30 s after scancel"
  elif ! grep -q 'stop requested: draining' "$scratch/serve-$job.log" ||
       ! grep -q 'drained; exiting' "$scratch/serve-$job.log"; then
    fail "serve job $job: no drain after scancel"
    tail -5 "$scratch/serve-$job.log"
  else
    echo "ok: scancel of serve job $job drained: $(grep -m1 'drained; exiting' "$scratch/serve-$job.log" | cut -c1-100)"
  fi
fi
finish
