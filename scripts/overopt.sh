#!/usr/bin/env bash
# The reward over-optimisation study: runs configs/overopt-{proxy,r2m,laser,hybrid}.yaml one after
# the other (each a few minutes on 2 cores), prints each run's JSON line, and draws gold reward
# against KL for all four on one chart (runs/overopt-gold-vs-kl.svg, and .png when rsvg-convert or
# ImageMagick is installed). Extra arguments are overrides for every run, e.g. rl.ppo.iterations=100.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
swift build -c release
stamp=$(date -u +%Y%m%d-%H%M%S)
runs=()
for method in proxy r2m laser hybrid; do
    out="runs/overopt-$method-$stamp"
    .build/release/rlhf overopt --config "configs/overopt-$method.yaml" "out=$out" "$@" | tail -n 1
    runs+=("$out")
done
.build/release/rlhf plot "${runs[@]}" --metric gold_mean --x kl --smooth 10 --out runs/overopt-gold-vs-kl.svg
