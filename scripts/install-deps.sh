#!/usr/bin/env bash
# Installs the Debian packages swift-rlhf needs, only those missing (Debian 12, run as root or with sudo).
set -euo pipefail
# libdnnl-dev: oneDNN, the bf16 matmuls (precision bf16).
# iproute2 and procps: the several-hosts test (scripts/multihost.sh: ip netns, pgrep).
# jq: the external-reward tests' reward command.
packages=(libopenblas-dev libdnnl-dev libopenmpi-dev openmpi-bin pkg-config iproute2 procps jq)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
