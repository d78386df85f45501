#!/usr/bin/env bash
# The Ubuntu counterpart of scripts/install_deps.sh, for scripts/sagemaker/Dockerfile.cuda (an NVIDIA CUDA
# devel image on Ubuntu 24.04): the same build and test dependencies by their Ubuntu names, without Debian's
# CPU libtorch and OpenBLAS (the CUDA build links the libtorch of PyPI's torch wheel, scripts/build_cuda.sh).
# Ubuntu 24.04 is the first release whose packages are new enough: cxxopts >= 3.1 (22.04 has 2.2, whose API
# dsmil does not compile against). Idempotent; needs root (or sudo).
set -euo pipefail

. /etc/os-release
if [ "${ID:-}" != ubuntu ] || [ "${VERSION_ID%%.*}" -lt 24 ]; then
  echo "[install] $PRETTY_NAME: this script is for Ubuntu 24.04 or later (cxxopts >= 3.1); use scripts/install_deps.sh on Debian 12" >&2
  exit 1
fi

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  python3 python3-venv python3-dev  # build_cuda.sh's torch venv; the training toolkit's C extension
  openssh-server openssh-client     # the training toolkit's mpi distribution
  libhdf5-dev hdf5-tools zlib1g-dev
  libxxhash-dev  # XXH3 digests of the feature values read
  libopenmpi-dev openmpi-bin
  libcairo2-dev libopenslide-dev
  libprotobuf-dev protobuf-compiler libisal-dev
  libcxxopts-dev libspdlog-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev
)

"$(dirname "$0")/../install_missing.sh" "${packages[@]}"
# What the build needs at least; apt would have installed an older one silently.
version=$(dpkg-query -W -f='${Version}' libcxxopts-dev)
if dpkg --compare-versions "$version" lt 3.1; then
  echo "[install] libcxxopts-dev $version is older than 3.1" >&2
  exit 1
fi
