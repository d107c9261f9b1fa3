#!/usr/bin/env bash
# The main job: installs missing system packages, builds the release binary, runs the default
# experiment (the arith pipeline: Hydra-SFT of the tiny GPT-2 on flawed demos, then PPO with a
# verifier) and prints held-out exact match after SFT and after PPO.
# Extra arguments are config overrides, e.g. `bash scripts/run.sh rl.ppo.iterations=50`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# The commit `rlhf --version` names.
RLHF_COMMIT=$(git describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)
export RLHF_COMMIT
swift build -c release
.build/release/rlhf pipeline --config configs/arith-tiny.yaml "$@"
