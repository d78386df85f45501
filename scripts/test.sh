#!/usr/bin/env bash
# README command 2: installs dependencies, builds, and runs the whole test suite (CTest + GoogleTest).
# With DSMIL_SANITIZE_TESTS=1 it then runs the unit tests under ASan + UBSan (scripts/sanitize.sh; not yet
# in CI: its build and run time on 2 cores have not been measured, and CI must stay under 45 minutes). In CI, or with DSMIL_CUDA_BUILD=1, it then also builds the same code against the CUDA
# libtorch of PyPI's torch wheel (scripts/build_cuda.sh: a 5 GB download) and runs the suite on its CPU path.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build.sh
BUILD_DIR=${BUILD_DIR:-build}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)"

# The unit tests again under ASan + UBSan (scripts/sanitize.sh: build-sanitize, -O1, only what they need).
if [ "${DSMIL_SANITIZE_TESTS:-0}" = "1" ]; then
  scripts/sanitize.sh
fi

if [ "${CI:-}" = "true" ] || [ "${DSMIL_CUDA_BUILD:-0}" = "1" ]; then
  # The wheel's libtorch under the unit, trainer and MPI tests; the SageMaker toolkit/launch and TensorBoard
  # e2e tests exercise Python tooling around the same binaries and ran above.
  BUILD_DIR=build-cuda CTEST_ARGS="-j $(nproc) -E ^e2e\.(sagemaker_local|sagemaker_launch|tensorboard)\$" \
    scripts/build_cuda.sh --test
fi
