#!/usr/bin/env bash
# README command 2: installs dependencies, builds, and runs the whole test suite (CTest + GoogleTest).
# In CI (CI=true), or with DSMIL_SANITIZE_TESTS=1, it then runs the unit tests under ASan + UBSan
# (scripts/sanitize.sh, about 9.5 minutes); in CI, or with DSMIL_CUDA_BUILD=1, it then builds the same code
# against the CUDA libtorch of PyPI's torch wheel (scripts/build_cuda.sh: a 3.5 GB download, 6 GB installed;
# it wants 9 GiB free and logs what it finds) and runs the suite on its CPU path. Each part prints its time; CI
# must stay under 45 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

in_ci() { [ "${CI:-}" = "true" ]; }
part() { echo "[test.sh] $1: $(( SECONDS - part_start )) s"; part_start=$SECONDS; }
part_start=$SECONDS
# CI hosts vary in free disk (one ran out during the torch install): say how much there is.
if in_ci; then echo "[test.sh] $(df -Pk . | awk 'NR == 2 { print int($4 / 1048576) }') GiB free at the start"; fi
scripts/build.sh
part "install and build"
BUILD_DIR=${BUILD_DIR:-build}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)"
part "tests"
# In CI nothing rebuilds here: the precompiled headers (1.1 GB of the build's 1.2) make room for the parts below.
if in_ci; then find "$BUILD_DIR" -name '*.gch' -delete; fi

# The unit tests again under ASan + UBSan (scripts/sanitize.sh: build-sanitize, -O1, only what they need).
if in_ci || [ "${DSMIL_SANITIZE_TESTS:-0}" = "1" ]; then
  BUILD_DIR=build-sanitize scripts/sanitize.sh
  part "sanitizer build and unit tests"
  # Nothing later reads it; in CI its 1.6 GB is better left to the torch wheel below.
  if in_ci; then rm -rf build-sanitize; fi
fi

if in_ci || [ "${DSMIL_CUDA_BUILD:-0}" = "1" ]; then
  # The wheel's libtorch under the unit, trainer and MPI tests; the SageMaker toolkit/launch and TensorBoard
  # e2e tests exercise Python tooling around the same binaries and ran above.
  BUILD_DIR=build-cuda CTEST_ARGS="-j $(nproc) -E ^e2e\.(sagemaker_local|sagemaker_launch|tensorboard)\$" \
    scripts/build_cuda.sh --test
  part "CUDA-wheel install, build and tests"
fi
