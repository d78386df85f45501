#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/; Debian's clang, ASan + UBSan) and runs each for a bounded time,
# starting from the committed corpus (tests/fuzz/corpus/<target>/). What a run finds is saved as
# $BUILD_DIR/findings/<target>/crash-* (or oom-*, timeout-*); replay one with
#   $BUILD_DIR/fuzz/dsmil_fuzz_<target> FILE    or, in the ordinary build, build/tests/dsmil_fuzz_replay <target> FILE
# and commit it under tests/fuzz/corpus/<target>/ with the fix. The inputs a run adds to the working corpus
# ($BUILD_DIR/corpus/<target>/) stay there; only the seeds and regression inputs are committed.
#   usage: scripts/fuzz.sh [SECONDS per target, default 60] [TARGET...]   (default: every target)
#   BUILD_DIR  build directory (default: build-fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(csv torch_archive checkpoint hyperparameters resourceconfig h5)
BUILD_DIR=${BUILD_DIR:-build-fuzz}

scripts/install_deps.sh
# clang and its compiler-rt (libFuzzer, the sanitizer runtimes): only this script needs them.
fuzz_packages=(clang libclang-rt-14-dev)
missing=()
for p in "${fuzz_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "[fuzz] installing: ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
    -DCMAKE_CXX_COMPILER=clang++ -DDSMIL_FUZZ=ON ${CMAKE_ARGS:-}
fi
cmake --build "$BUILD_DIR" -j "${JOBS:-$(nproc)}" $(printf -- '--target dsmil_fuzz_%s ' "${TARGETS[@]}")

# Leaks are not findings (libtorch keeps global allocations until exit); libtorch and protobuf carry copies
# of the same symbols (ODR check off). Everything else aborts and is saved.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:detect_odr_violation=0:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
found=0
for t in "${TARGETS[@]}"; do
  corpus="$BUILD_DIR/corpus/$t" findings="$BUILD_DIR/findings/$t"
  mkdir -p "$corpus" "$findings"
  echo "[fuzz] $t: ${SECONDS_EACH} s"
  # -malloc_limit_mb: one allocation over 1 GB from a few KB of input is an unbounded allocation (a finding).
  if ! "$BUILD_DIR/fuzz/dsmil_fuzz_$t" "$corpus" "tests/fuzz/corpus/$t" -max_total_time="$SECONDS_EACH" \
      -timeout=20 -rss_limit_mb=3072 -malloc_limit_mb=1024 -max_len=16384 -artifact_prefix="$findings/" \
      -print_final_stats=1 > "$BUILD_DIR/fuzz-$t.log" 2>&1; then
    found=1
    echo "[fuzz] $t: FINDING, see $BUILD_DIR/fuzz-$t.log and $findings/"
    grep -m3 -E "^\[fuzz\]|ERROR: |SUMMARY: " "$BUILD_DIR/fuzz-$t.log" || true
  fi
  grep -E "^stat::number_of_executed_runs|^stat::new_units_added" "$BUILD_DIR/fuzz-$t.log" | tr '\n' ' ' || true
  echo
done
exit "$found"
