#!/usr/bin/env bash
# README command 2: installs dependencies, builds, and runs the whole test suite (CTest + GoogleTest).
# In CI (CI=true), or with DSMIL_CUDA_BUILD=1, it then also builds the same code against the CUDA
# libtorch of PyPI's torch wheel (scripts/build_cuda.sh: a 5 GB download) and runs the suite on its CPU path.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build.sh
BUILD_DIR=${BUILD_DIR:-build}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)"

if [ "${CI:-}" = "true" ] || [ "${DSMIL_CUDA_BUILD:-0}" = "1" ]; then
  BUILD_DIR=build-cuda scripts/build_cuda.sh --test
fi
