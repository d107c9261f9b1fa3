#!/usr/bin/env bash
# The main job: installs missing system packages, builds the release binary, runs the default
# experiment (SFT of the tiny GPT-2 on the built-in arithmetic task) and prints eval accuracy.
# Extra arguments are config overrides, e.g. `bash scripts/run.sh train.steps=500`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
swift build -c release
.build/release/rlhf sft --config configs/arith-sft.yaml "$@"
