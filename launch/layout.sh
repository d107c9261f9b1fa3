#!/usr/bin/env bash
# The layout the cluster model recommends (`rlhf bench scale --predict … --recommend`), printed as
# "RANKS_PER_HOST THREADS_PER_RANK REDUCTION":
#   launch/layout.sh STAGE HOSTS CORES_PER_HOST [HOST_MEMORY_GIB]
# STAGE is the rlhf command (sft, hydra-sft, rm, dpo: modelled as a full fine-tuning SFT step, the
# most gradient traffic; ppo, pipeline: a GRPO iteration). The model's inputs are the figures
# measured on one machine in $SCALE_MEASUREMENTS (default: the committed Zen 5 measurements;
# `RATE=10gbit bash scripts/multihost.sh model OUT` measures your own), at the shape of $SCALE_PRESET
# (llama/smollm2-135m, or qwen2/qwen2.5-0.5b for larger models), with a link between hosts of
# $LINK_GBPS Gbit/s (10) and $LINK_LATENCY_MS ms (0.2). HOST_MEMORY_GIB defaults to this machine's.
# $RLHF names the binary (default .build/release/rlhf).
set -euo pipefail
stage=${1:?usage: launch/layout.sh STAGE HOSTS CORES_PER_HOST [HOST_MEMORY_GIB]}
hosts=${2:?HOSTS}; cores=${3:?CORES_PER_HOST}
memory=${4:-$(awk '/^MemTotal/ {printf "%d", $2 / 1048576}' /proc/meminfo)}
cd "$(dirname "$0")/.."
case "$stage" in
    ppo | pipeline) workload=grpo ;;
    sft | hydra-sft | rm | dpo) workload=sft ;;
    *) echo "launch/layout.sh: no model of '$stage' (sft, hydra-sft, rm, dpo, ppo, pipeline)" >&2; exit 2 ;;
esac
exec "${RLHF:-$PWD/.build/release/rlhf}" bench scale --recommend \
    --predict "${SCALE_MEASUREMENTS:-benchmarks/2026-12-07-cluster-model-zen5.jsonl}" \
    --workload "$workload" --preset "${SCALE_PRESET:-llama/smollm2-135m}" --hosts "$hosts" \
    --cores-per-host "$cores" --host-memory-gib "$memory" \
    --across-gbps "${LINK_GBPS:-10}" --across-latency-ms "${LINK_LATENCY_MS:-0.2}"
