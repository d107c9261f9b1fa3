#!/usr/bin/env bash
# Re-records Tests/EndToEndTests/Fixtures/behaviour.json: the trained files and metrics of short
# runs that BehaviourTests compares bit for bit. Run it only for a change that alters the numbers
# on purpose (or on a CPU whose kernels round differently), and say why in the commit.
set -euo pipefail
cd "$(dirname "$0")/.."
flags=(-c release -Xswiftc -enable-testing)
swift build "${flags[@]}" --build-tests
RLHF_RECORD_BEHAVIOUR=1 swift test "${flags[@]}" --skip-build --disable-swift-testing --filter BehaviourTests
