#!/usr/bin/env bash
# Installs those of the given apt packages that are not installed yet: nothing at all (no apt-get update)
# when every one is present. Shared by scripts/install_deps.sh (Debian 12) and
# scripts/sagemaker/install_deps_ubuntu.sh (Ubuntu 24.04, in Dockerfile.cuda). Needs root (or sudo).
#   usage: install_missing.sh PACKAGE...
set -euo pipefail

missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2> /dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "[install] all $# packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "[install] installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
