#!/usr/bin/env bash
# The reward over-optimisation study, second edition: configs/overopt.yaml runs every method on
# seeds 1-3 (26 minutes on 2 Zen 5 cores), prints one JSON line per run and the mean ± sd table,
# and draws gold reward against KL with a band over the seeds per method
# (runs/overopt-*/gold-vs-kl.svg; .png too when rsvg-convert or ImageMagick is installed).
# Extra arguments are overrides, e.g. study.seeds=1 rl.ppo.iterations=100.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
swift build -c release
out="runs/overopt-$(date -u +%Y%m%d-%H%M%S)"
.build/release/rlhf overopt --config configs/overopt.yaml "out=$out" "$@"
.build/release/rlhf plot "$out" --bands --metric gold_mean --x kl --smooth 10 --out "$out/gold-vs-kl.svg"
