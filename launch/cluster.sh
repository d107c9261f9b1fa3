#!/usr/bin/env bash
# Several machines: launch/cluster.sh HOSTFILE NP|auto rlhf-arguments…
#   RANKS_PER_HOST=R  ranks placed on each machine
#   THREADS_PER_RANK=T  cores (and BLAS/kernel threads) per rank
# Unset, both come from the cluster model (launch/layout.sh: the fastest split of a machine's cores
# that fits its memory, for the stage in the arguments), and NP auto is hosts × R; a recommended
# hierarchical gradient route is passed as cluster.reduction=hierarchical. CORES_PER_HOST defaults
# to the hostfile's slots= (else this machine's cores). The layout is printed before the run.
# Each rank is bound to its T cores (mpirun --map-by ppr:R:node:PE=T --bind-to core), so ranks of
# one machine do not share cores; R × T should be the machine's core count.
# Every machine needs the same build at the same path (a shared filesystem, or build on each;
# for mixed CPUs build with RLHF_TARGET_CPU=<oldest cpu>) and passwordless ssh from this one.
# Run folders and checkpoints are written by rank 0 and read back by every rank on resume, so
# `out:` must be on a filesystem all machines share. Frozen weights are kept once per machine in
# /dev/shm (cluster.share_weights).
set -euo pipefail
hostfile=${1:?usage: launch/cluster.sh HOSTFILE NP|auto rlhf-arguments…}; np=${2:?NP}; shift 2
stage=${1:?the rlhf command (sft, ppo, …)}
cd "$(dirname "$0")/.."
hosts=$(awk '!/^[[:space:]]*(#|$)/ {n++} END {print n + 0}' "$hostfile")
# slots= of the first machine (not max_slots=): its cores.
slots=$(awk '!/^[[:space:]]*(#|$)/ {
    for (i = 2; i <= NF; i++) if ($i ~ /^slots=/) { sub(/^slots=/, "", $i); print $i }
    exit
}' "$hostfile")
cores=${CORES_PER_HOST:-${slots:-$(nproc)}}
extra=()
if [ -z "${RANKS_PER_HOST:-}${THREADS_PER_RANK:-}" ]; then
    if ! layout=$(launch/layout.sh "$stage" "$hosts" "$cores"); then
        echo "launch/cluster.sh: no layout from the cluster model (above); set RANKS_PER_HOST and THREADS_PER_RANK" >&2
        exit 2
    fi
    read -r RANKS_PER_HOST THREADS_PER_RANK route <<<"$layout"
    # The recommended route, unless the arguments choose one.
    chosen=no
    for argument in "$@"; do [[ $argument == cluster.reduction=* ]] && chosen=yes; done
    if [ "$route" = hierarchical ] && [ $chosen = no ]; then extra=(cluster.reduction=hierarchical); fi
    echo "launch/cluster.sh: the cluster model recommends $RANKS_PER_HOST ranks × $THREADS_PER_RANK threads" \
        "per host ($hosts hosts of $cores cores), $route gradient route" >&2
elif [ -z "${RANKS_PER_HOST:-}" ] || [ -z "${THREADS_PER_RANK:-}" ]; then
    echo "launch/cluster.sh: set both RANKS_PER_HOST and THREADS_PER_RANK, or neither (the model chooses)" >&2
    exit 2
fi
threads=$THREADS_PER_RANK
ranks=$RANKS_PER_HOST
if [ "$np" = auto ]; then
    np=$((hosts * ranks))
elif [ "$np" -ne $((hosts * ranks)) ]; then
    echo "launch/cluster.sh: note: NP $np is not $hosts hosts × $ranks ranks; mpirun places $ranks per host" >&2
fi
root=(); [ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
exec mpirun "${root[@]}" --hostfile "$hostfile" -np "$np" --map-by "ppr:$ranks:node:PE=$threads" --bind-to core \
  --report-bindings -x OPENBLAS_NUM_THREADS="$threads" -x PATH -x LD_LIBRARY_PATH \
  "$PWD/.build/release/rlhf" "$@" "${extra[@]}"
