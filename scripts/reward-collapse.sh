#!/usr/bin/env bash
# Reward collapse: configs/reward-collapse.yaml with each utility (x, log, x_inv, adaptive), one JSON
# line each (per prompt class: mean, std and histogram entropy of the held-out σ(r)), and the
# histograms drawn per run (runs/reward-collapse-*/UTILITY/reward_histograms.svg).
# Extra arguments are overrides for every run, e.g. train.steps=500.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
swift build -c release
out="runs/reward-collapse-$(date -u +%Y%m%d-%H%M%S)"
for utility in x log x_inv adaptive; do
    .build/release/rlhf rm --config configs/reward-collapse.yaml "rm.utility=$utility" "out=$out/$utility" "$@" | tail -n 1
    .build/release/rlhf plot "$out/$utility" --histograms > /dev/null
done
