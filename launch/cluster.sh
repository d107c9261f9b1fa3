#!/usr/bin/env bash
# Several machines: launch/cluster.sh HOSTFILE NP rlhf-arguments…
# Every machine needs the same build at the same path (a shared filesystem, or build on each;
# for mixed CPUs build with RLHF_TARGET_CPU=<oldest cpu>) and passwordless ssh from this one.
# Run folders and checkpoints are written by rank 0 and read back by every rank on resume, so
# `out:` must be on a filesystem all machines share.
set -euo pipefail
hostfile=${1:?usage: launch/cluster.sh HOSTFILE NP rlhf-arguments…}; np=${2:?NP}; shift 2
cd "$(dirname "$0")/.."
root=(); [ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
exec mpirun "${root[@]}" --hostfile "$hostfile" -np "$np" \
  -x OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" -x PATH -x LD_LIBRARY_PATH \
  "$PWD/.build/release/rlhf" "$@"
