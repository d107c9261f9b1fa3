#!/usr/bin/env bash
# Several processes on this node: launch/local.sh NP rlhf-arguments…
# Root needs --allow-run-as-root; more ranks than cores need --oversubscribe, and then each rank
# gets one OpenBLAS thread so ranks do not fight over cores (docs/platform.md §1, fact 7).
set -euo pipefail
np=${1:?usage: launch/local.sh NP rlhf-arguments…}; shift
cd "$(dirname "$0")/.."
exec mpirun -np "$np" --allow-run-as-root --oversubscribe \
  -x OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" \
  .build/release/rlhf "$@"
