#!/bin/bash
# Replays MPITests.testASuspendedRankSaysSoWhenItWakes many times in one job: a 2-rank SFT run whose
# rank 1 is stopped for 3 s (SIGSTOP, SIGCONT) N times at random moments; every stop must be
# reported by rank 1 ("this process was suspended for 3 s"). Usage: scripts/suspend-replay.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
binary=.build/release/rlhf
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mpirun --allow-run-as-root --oversubscribe -np 2 -x OPENBLAS_NUM_THREADS=1 "$binary" sft name=replay \
    out="$out/run" resume=never data.task=arith data.eval_size=50 train.steps=1000000 train.batch_size=16 \
    train.micro_batch_size=4 train.max_length=16 eval.every=0 checkpoint.every=0 log.every=1 \
    cluster.timeout=900 >"$out/log" 2>&1 &
job=$!
sleep 6
victim=""
for p in $(pgrep -f "out=$out/run"); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1' \
        && ! tr '\0' ' ' <"/proc/$p/cmdline" | grep -q mpirun; then victim=$p; fi
done
[ -n "$victim" ] || { echo "rank 1 not found"; kill $job; exit 1; }
stops=${1:-40}
for _ in $(seq "$stops"); do
    sleep "0.$((RANDOM % 1000))"
    kill -STOP "$victim"; sleep 3; kill -CONT "$victim"
    sleep 0.5
done
sleep 1
reports=$(grep -c 'this process was suspended for 3 s' "$out/log" || true)
kill $job; wait $job 2>/dev/null || true
echo "stops $stops, reported $reports"
[ "$reports" -eq "$stops" ]
