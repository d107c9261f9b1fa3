#!/usr/bin/env bash
# Builds rlhf for machines without Swift and installs it under a prefix, without root:
#   bash scripts/install.sh [--prefix DIR]          (default: $HOME/.local)
#   RLHF_TARGET_CPU=x86-64-v3 bash scripts/install.sh --prefix /shared/rlhf    (for a cluster's nodes)
# The Swift standard library and Foundation are linked into the binary (--static-swift-stdlib), so the
# nodes need only the system libraries it names (OpenBLAS, Open MPI, oneDNN and its libgomp: Debian's
# libopenblas0, libopenmpi3, libdnnl2.6, libgomp1). Hot loops are compiled for RLHF_TARGET_CPU
# (default: native, this machine's CPU; x86-64-v3 runs on every AVX2 CPU since 2013, x86-64-v4 needs
# AVX-512); a CPU without the level's instructions is refused with a message, not a crash.
# Installs DIR/bin/rlhf, and DIR/share/rlhf/ with the configs, the launch scripts and the Python
# helpers (reward_server.py, parquet_to_jsonl.py). Prints the installed binary's `--version`.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="$HOME/.local"
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a folder}"; shift 2 ;;
    --prefix=*) prefix="${1#--prefix=}"; shift ;;
    *) echo "usage: bash scripts/install.sh [--prefix DIR]" >&2; exit 2 ;;
  esac
done
# Building needs the -dev packages; running needs only their libraries (install-deps needs root).
if [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null; then bash scripts/install-deps.sh; fi
RLHF_COMMIT=$(git describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)
export RLHF_COMMIT
# A build folder of its own: other flags than the development build's, and no lock shared with it.
scratch=".build-static-${RLHF_TARGET_CPU:-native}"
swift build -c release --static-swift-stdlib --scratch-path "$scratch" --product rlhf
mkdir -p "$prefix/bin" "$prefix/share/rlhf/scripts"
install -m 755 "$scratch/release/rlhf" "$prefix/bin/rlhf"
cp -r configs launch "$prefix/share/rlhf/"
install -m 644 scripts/reward_server.py scripts/parquet_to_jsonl.py "$prefix/share/rlhf/scripts/"
"$prefix/bin/rlhf" --version
echo "installed $prefix/bin/rlhf (add $prefix/bin to PATH)"
