#!/usr/bin/env bash
# The unit tests (ctest label `unit`: dsmil_tests, and the fuzz targets replayed over their committed corpus,
# dsmil_fuzz_replay) built with AddressSanitizer + UndefinedBehaviorSanitizer in their own build directory
# (default build-sanitize; DSMIL_SANITIZE=ON). Only what the unit tests need is built (no benches, trainer
# or evaluator binaries), at -O1 -g1: line tables are enough for the stack traces. CI runs it from
# scripts/test.sh: about 9.5 minutes from scratch on 2 cores (build 6, tests 3.5).
# libtorch, HDF5 and OpenMPI stay Debian's uninstrumented libraries: leak detection is off (libtorch keeps
# global allocations until exit) and so is the ODR check (protobuf and libtorch each carry copies of the
# same symbols); every other ASan/UBSan finding fails its test.
#   usage: scripts/sanitize.sh [extra ctest arguments, e.g. -R CheckpointStore]
#   BUILD_DIR  build directory (default: build-sanitize)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install_deps.sh
BUILD_DIR=${BUILD_DIR:-build-sanitize}
JOBS=${JOBS:-$(nproc)}
START=$SECONDS
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
    -DDSMIL_SANITIZE=ON -DDSMIL_BUILD_BENCH=OFF ${CMAKE_ARGS:-}
fi
cmake --build "$BUILD_DIR" -j "$JOBS" --target dsmil_tests dsmil_fuzz_replay
BUILT=$SECONDS
# allocator_may_return_null: an allocation too large for the machine throws std::bad_alloc as it would without
# ASan (Channel.AnAllocationFailureWhileReadingNamesTheFile checks that the error names the file).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:detect_odr_violation=0:abort_on_error=1:strict_init_order=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$BUILD_DIR" -L unit --output-on-failure -j "$JOBS" "$@"
echo "sanitize: build $((BUILT - START)) s, tests $((SECONDS - BUILT)) s"
