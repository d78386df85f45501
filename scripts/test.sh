#!/usr/bin/env bash
# README command 2: installs dependencies, builds, and runs the whole test suite (CTest + GoogleTest).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build.sh
BUILD_DIR=${BUILD_DIR:-build}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)"
