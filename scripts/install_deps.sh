#!/usr/bin/env bash
# Installs the Debian packages dsmil builds and tests against. Idempotent: skips apt entirely when
# every package is already installed. Needs root (or sudo) on Debian 12.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  python3 python3-venv  # the CUDA-wheel build (scripts/build_cuda.sh) installs PyPI torch into a venv
  python3-dev           # scripts/sagemaker/python_env.sh: the training toolkit compiles a small C extension
  openssh-server openssh-client  # the training toolkit's mpi distribution starts sshd and reaches hosts by ssh
  libtorch-dev          # libtorch 1.13, CPU
  libdnnl-dev           # the oneDNN libtorch 1.13 links: bf16 products with run-time shapes (cmake/onednn.cmake)
  libgloo-dev           # headers of the Gloo libtorch 1.13 links: c10d's ProcessGroupGloo (--comm gloo)
  libopenblas0-openmp   # without it libtorch uses the reference BLAS (~20x slower)
  libhdf5-dev hdf5-tools zlib1g-dev  # zlib: CRC32 of checkpoint files
  libxxhash-dev         # XXH3 digests of the feature values read, checked on resume
  libopenmpi-dev openmpi-bin
  libcairo2-dev libopenslide-dev  # dsmil_eval --plots: PNG drawing, slide thumbnails
  libprotobuf-dev protobuf-compiler libisal-dev  # TensorBoard event files: Event protos, CRC32C
  libcxxopts-dev libspdlog-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev  # gmock: Debian's GTest CMake targets refer to it
)

"$(dirname "$0")/install_missing.sh" "${packages[@]}"
