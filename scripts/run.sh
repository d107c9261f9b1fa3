#!/usr/bin/env bash
# The main job. Until the default experiment lands (the PPO pipeline), it builds the release
# binary and measures the numerical core on the tiny preset: `rlhf bench model`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
swift build -c release
.build/release/rlhf bench model --preset tiny "$@"
