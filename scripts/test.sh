#!/usr/bin/env bash
# README command 2: installs dependencies, builds, and runs the whole test suite (CTest + GoogleTest).
# In CI (CI=true), or with DSMIL_SANITIZE_TESTS=1, it then runs the unit tests under ASan + UBSan
# (scripts/sanitize.sh, about 9.5 minutes); in CI, or with DSMIL_CUDA_BUILD=1, it then builds the same code
# against the CUDA libtorch of PyPI's torch wheel (scripts/build_cuda.sh: a 5 GB download) and runs the suite
# on its CPU path. Each part prints its time; CI must stay under 45 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

in_ci() { [ "${CI:-}" = "true" ]; }
part() { echo "[test.sh] $1: $(( SECONDS - part_start )) s"; part_start=$SECONDS; }
part_start=$SECONDS

scripts/build.sh
part "install and build"
BUILD_DIR=${BUILD_DIR:-build}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)"
part "tests"

# The unit tests again under ASan + UBSan (scripts/sanitize.sh: build-sanitize, -O1, only what they need).
if in_ci || [ "${DSMIL_SANITIZE_TESTS:-0}" = "1" ]; then
  BUILD_DIR=build-sanitize scripts/sanitize.sh
  part "sanitizer build and unit tests"
fi

if in_ci || [ "${DSMIL_CUDA_BUILD:-0}" = "1" ]; then
  # The wheel's libtorch under the unit, trainer and MPI tests; the SageMaker toolkit/launch and TensorBoard
  # e2e tests exercise Python tooling around the same binaries and ran above.
  BUILD_DIR=build-cuda CTEST_ARGS="-j $(nproc) -E ^e2e\.(sagemaker_local|sagemaker_launch|tensorboard)\$" \
    scripts/build_cuda.sh --test
  part "CUDA-wheel install, build and tests"
fi
