#!/usr/bin/env bash
# Fuzzes the parsers a user's files or another rank's messages reach (issue 15) with libFuzzer:
# safetensors headers, tokenizer.json, JSONL datasets, the YAML config loader, the role wire
# format and GGUF. Not part of CI's default path; run it after changing a parser.
#
#   bash scripts/fuzz.sh [SECONDS per target, default 60] [TARGET…]
#
# Builds rlhf-fuzz with -sanitize=fuzzer into .build-fuzz, seeds each target from the repository's
# saved inputs (Tests/Fuzz/TARGET), and runs it for SECONDS. A crash leaves
# its input in .build-fuzz/crashes/TARGET-*; fix the parser, then add the input to Tests/Fuzz/TARGET
# (FuzzRegressionTests replays every file there on each test run).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors tokenizer jsonl config wire gguf)

mkdir -p .build-fuzz
# SwiftPM links with gold, which stops with "internal error in format_file_lineno" on this
# toolchain's libFuzzer; the same link command with lld works, so a failed link is redone with it.
if ! swift build -v -c release --product rlhf-fuzz --build-path .build-fuzz -Xswiftc -sanitize=fuzzer -Xswiftc -DFUZZING > .build-fuzz/build.log 2>&1; then
    link=$(grep -- "-emit-executable" .build-fuzz/build.log | grep -- "-o [^ ]*/rlhf-fuzz " | tail -1)
    [ -n "$link" ] || { tail -30 .build-fuzz/build.log; exit 1; }
    eval "$link -use-ld=lld" > .build-fuzz/link.log 2>&1 || { tail -c 3000 .build-fuzz/link.log; exit 1; }
fi
binary=$(swift build -c release --build-path .build-fuzz --show-bin-path)/rlhf-fuzz

# Seeds: the saved inputs (Tests/Fuzz/TARGET), and for the config loader the shipped configs.
seeds() { ls Tests/Fuzz/"$1"/*; [ "$1" != config ] || ls configs/*.yaml; }

status=0
for target in "${targets[@]}"; do
    corpus=.build-fuzz/corpus/$target
    mkdir -p "$corpus" .build-fuzz/crashes
    for seed in $(seeds "$target"); do cp "$seed" "$corpus/"; done
    echo "== $target: ${seconds} s"
    # Inputs up to 64 KB: headers, configs and lines are small; the largest seeds are cut to it.
    if ! RLHF_FUZZ_TARGET=$target "$binary" "$corpus" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=4096 \
        -timeout=20 -artifact_prefix=".build-fuzz/crashes/$target-" -print_final_stats=1 2>&1 | tail -n 12; then
        status=1
    fi
    # libFuzzer exits non-zero on a finding; the pipe above keeps only its summary.
    if ls .build-fuzz/crashes/"$target"-* >/dev/null 2>&1; then echo "$target: findings in .build-fuzz/crashes/"; status=1; fi
done
exit $status
