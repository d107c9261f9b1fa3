#!/usr/bin/env bash
# Several machines: launch/cluster.sh HOSTFILE NP rlhf-arguments…
#   RANKS_PER_HOST=R  ranks placed on each machine (default: the hostfile's slots)
#   THREADS_PER_RANK=T  cores (and BLAS/kernel threads) per rank (default 1)
# Each rank is bound to its T cores (mpirun --map-by ppr:R:node:PE=T --bind-to core), so ranks of
# one machine do not share cores; R × T should be the machine's core count. One rank per core is
# the fastest layout for data parallelism on one machine (docs/platform.md §2); across machines
# fewer ranks with more threads each send fewer gradients over the network.
# Every machine needs the same build at the same path (a shared filesystem, or build on each;
# for mixed CPUs build with RLHF_TARGET_CPU=<oldest cpu>) and passwordless ssh from this one.
# Run folders and checkpoints are written by rank 0 and read back by every rank on resume, so
# `out:` must be on a filesystem all machines share. Frozen weights are kept once per machine in
# /dev/shm (cluster.share_weights).
set -euo pipefail
hostfile=${1:?usage: launch/cluster.sh HOSTFILE NP rlhf-arguments…}; np=${2:?NP}; shift 2
cd "$(dirname "$0")/.."
threads=${THREADS_PER_RANK:-1}
root=(); [ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
placement=(--bind-to core)
if [ -n "${RANKS_PER_HOST:-}" ]; then
    placement=(--map-by "ppr:$RANKS_PER_HOST:node:PE=$threads" --bind-to core)
elif [ "$threads" -gt 1 ]; then
    placement=(--map-by "slot:PE=$threads" --bind-to core)
fi
exec mpirun "${root[@]}" --hostfile "$hostfile" -np "$np" "${placement[@]}" --report-bindings \
  -x OPENBLAS_NUM_THREADS="$threads" -x PATH -x LD_LIBRARY_PATH \
  "$PWD/.build/release/rlhf" "$@"
