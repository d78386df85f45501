#!/usr/bin/env bash
# Installs dependencies (Debian packages) and builds dsmil in Release mode. Idempotent: an existing
# build directory is reused and only what changed is rebuilt.
#   BUILD_DIR   build directory (default: build)
#   BUILD_TYPE  CMake build type (default: Release)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install_deps.sh

BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-Release}
# One compile job per core: a libtorch translation unit needs ~1.5 GB, so 2 cores / 24 GiB is fine.
JOBS=${JOBS:-$(nproc)}

if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" ${CMAKE_ARGS:-}
fi
cmake --build "$BUILD_DIR" -j "$JOBS"
