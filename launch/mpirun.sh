#!/usr/bin/env bash
# mpirun with the flags a single machine (and CI, as root, in a container) needs:
#   bash launch/mpirun.sh -np 2 build/launch/tpserve generate --model DIR --prompt-ids 1,2,3
# On a cluster use your site's mpirun/srun directly.
set -euo pipefail
flags=(--oversubscribe --bind-to none --mca btl self,vader --mca btl_vader_single_copy_mechanism none)
[[ $(id -u) -eq 0 ]] && flags+=(--allow-run-as-root)
exec mpirun "${flags[@]}" "$@"
