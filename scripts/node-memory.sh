#!/usr/bin/env bash
# What the machine holds for a job of N ranks on this host (issue 28, point 1): runs
#   mpirun -np N .build/release/rlhf ARGS...
# and samples every rank's PSS (/proc/<pid>/smaps_rollup: shared pages divided among the processes
# that map them) every 0.2 s. Prints one JSON line: the peak of the ranks' summed PSS, each rank's
# peak RSS (VmHWM) and the seconds the job took. Compare with N = 1 for one rank's peak RSS.
#
#   bash scripts/node-memory.sh 4 ppo --config configs/smollm2-ifeval.yaml ppo.iterations=1
set -euo pipefail
cd "$(dirname "$0")/.."
np=$1
shift
rlhf=${RLHF_BIN:-$PWD/.build/release/rlhf}
log=${LOG:-/tmp/node-memory-np$np.log}
start=$(date +%s.%N)
mpirun --allow-run-as-root --oversubscribe -np "$np" "$rlhf" "$@" >"$log" 2>&1 &
launcher=$!
peak=0
declare -A hwm
while kill -0 "$launcher" 2>/dev/null; do
    sum=0
    for pid in $(pgrep -P "$launcher" || true); do
        pss=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
        rss=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        sum=$((sum + ${pss:-0}))
        if [ "${rss:-0}" -gt "${hwm[$pid]:-0}" ]; then hwm[$pid]=$rss; fi
    done
    if [ "$sum" -gt "$peak" ]; then peak=$sum; fi
    sleep 0.2
done
wait "$launcher" && status=0 || status=$?
seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')
ranks=$(for pid in "${!hwm[@]}"; do echo "${hwm[$pid]}"; done | sort -n | awk '{printf "%s%.1f", (NR > 1 ? ", " : ""), $1 / 1024}')
printf '{"np": %d, "peak_pss_sum_mib": %.1f, "rank_peak_rss_mib": [%s], "seconds": %.1f, "status": %d, "log": "%s"}\n' \
    "$np" "$(awk -v k="$peak" 'BEGIN {print k / 1024}')" "$ranks" "$seconds" "$status" "$log"
