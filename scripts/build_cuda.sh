#!/usr/bin/env bash
# Builds dsmil against the CUDA-enabled libtorch 2.x shipped in PyPI's `torch` wheel (the libtorch that
# SageMaker GPU images carry), next to the default Debian libtorch 1.13 build. Runs on a machine without a
# GPU: the CPU path of the result is what `--test` exercises. Handles the two traps measured in the shared
# docs/cuda-build.md (the wheel's TorchConfig.cmake picking Debian's libtorch.so/libc10.so; ld resolving
# NCCL from the CUDA toolkit instead of the wheel) and a third one (the wheel's bundled fmt headers
# shadowing the fmt that Debian's spdlog is built with), then checks with ldd that no binary mixes in
# Debian's libtorch.
#
# Usage: scripts/build_cuda.sh [--test] [--reconfigure]
#   --test         run the test suite (ctest) after building
#   --reconfigure  re-run CMake configure even if the build directory is already configured
# Environment:
#   TORCH_VENV   virtual environment holding the torch wheel (default: <repo>/.venv-torch); created and
#                filled with `pip install torch h5py scikit-learn` when missing or when one does not import
#   PYTHON       interpreter used to create the venv (default: python3)
#   BUILD_DIR    build directory (default: build-cuda)
#   BUILD_TYPE   CMake build type (default: Release)
#   JOBS         parallel build jobs (default: nproc)
#   CMAKE_ARGS   extra arguments for the CMake configure step
#   CTEST_ARGS   extra arguments for ctest with --test (scripts/test.sh: -j and the tests it leaves out)
#   CUDACXX      nvcc to configure with (default: nvcc on PATH, else $CUDA_HOME/bin or /usr/local/cuda/bin)
#   SYSTEM_FMT_INCLUDE  folder holding the fmt/ headers Debian's spdlog uses (default: /usr/include)
#   DSMIL_SKIP_DEPS  1: do not run scripts/install_deps.sh (a machine with no package registry, whose
#                packages bench/gpu_bench.sh checked)
#   BUILD_TARGETS  space-separated targets to build (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

log() { echo "[cuda-build] $*"; }
die() { echo "[cuda-build] ERROR: $*" >&2; exit 1; }
now() { date +%s; }

RUN_TESTS=0
RECONFIGURE=0
for arg in "$@"; do
  case "$arg" in
    --test) RUN_TESTS=1 ;;
    --reconfigure) RECONFIGURE=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $arg (try --help)" ;;
  esac
done

TORCH_VENV=${TORCH_VENV:-$REPO/.venv-torch}
PYTHON=${PYTHON:-python3}
BUILD_DIR=${BUILD_DIR:-build-cuda}
BUILD_TYPE=${BUILD_TYPE:-Release}
JOBS=${JOBS:-$(nproc)}

# The Debian packages (compiler, CMake, Ninja, HDF5, spdlog, GTest, ...) are shared with the default build.
[ "${DSMIL_SKIP_DEPS:-0}" = 1 ] || scripts/install_deps.sh

# --- 1. Virtual environment with PyPI's torch --------------------------------------------------------
# With h5py and scikit-learn: tests/e2e/torch_load.sh and bench/reference_train.py run the authors' model in it.
VPY=$TORCH_VENV/bin/python
if [ -x "$VPY" ] && "$VPY" -W ignore -c 'import torch, h5py, sklearn' >/dev/null 2>&1; then
  log "venv $TORCH_VENV: torch $("$VPY" -W ignore -c 'import torch; print(torch.__version__)') present, skipping install"
else
  t0=$(now)
  if [ ! -x "$VPY" ]; then
    log "creating venv $TORCH_VENV"
    "$PYTHON" -m venv "$TORCH_VENV"
  fi
  # About 3.5 GB of wheels unpack to 6 GB; the install peaked at 8.4 GB (torch 2.15). No pip cache: it would keep
  # another 3.5 GB copy of the wheels (CI ran out of disk here once).
  need_gib=9  # the peak, and 1.5 GB for build-cuda once pip has removed its downloads
  free_gib=$(df -Pk "$(dirname "$TORCH_VENV")" | awk 'NR == 2 { print int($4 / 1048576) }')
  [ "$free_gib" -ge "$need_gib" ] \
    || die "installing torch into $TORCH_VENV needs about $need_gib GiB free there; $free_gib GiB is free"
  log "installing torch from PyPI into $TORCH_VENV (about 6 GB with its nvidia-* wheels, a few minutes; $free_gib GiB free)"
  "$VPY" -m pip install --no-cache-dir torch h5py scikit-learn
  "$VPY" -W ignore -c 'import torch, h5py, sklearn' || die "torch, h5py or sklearn does not import in $TORCH_VENV after pip install"
  log "torch $("$VPY" -W ignore -c 'import torch; print(torch.__version__)') installed in $(( $(now) - t0 )) s"
fi

mapfile -t torch_info < <("$VPY" -W ignore - <<'EOF'
import os, torch, torch.utils
print(torch.__version__, torch.utils.cmake_prefix_path, os.path.dirname(torch.__file__), sep="\n")
EOF
)
[ "${#torch_info[@]}" = 3 ] || die "could not ask $VPY for torch's version and paths"
TORCH_VERSION=${torch_info[0]} TORCH_PREFIX=${torch_info[1]} TORCH_DIR=${torch_info[2]}
TORCH_LIB=$TORCH_DIR/lib
SITE_PACKAGES=$(dirname "$TORCH_DIR")
for f in libtorch.so libc10.so libtorch_cpu.so; do
  [ -f "$TORCH_LIB/$f" ] || die "$TORCH_LIB/$f missing: is $TORCH_VENV's torch a full wheel?"
done
log "torch $TORCH_VERSION, CMake prefix $TORCH_PREFIX"

# --- 2. Configure ------------------------------------------------------------------------------------
# The wheel's TorchConfig needs a CUDA toolkit (nvcc) at configure time.
if [ -z "${CUDACXX:-}" ]; then
  NVCC=$(command -v nvcc || true)
  [ -n "$NVCC" ] || for c in "${CUDA_HOME:-}" /usr/local/cuda; do
    [ -n "$c" ] && [ -x "$c/bin/nvcc" ] && { NVCC=$c/bin/nvcc; break; }
  done
  [ -n "$NVCC" ] || die "nvcc not found on PATH nor in \$CUDA_HOME/bin or /usr/local/cuda/bin: the wheel's TorchConfig needs a CUDA toolkit"
  export CUDACXX=$NVCC
fi
CUDA_ROOT=$(dirname "$(dirname "$CUDACXX")")
export CUDAToolkit_ROOT=${CUDAToolkit_ROOT:-$CUDA_ROOT}
log "CUDA toolkit: $CUDAToolkit_ROOT ($("$CUDACXX" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'))"

# Trap 2: let ld resolve libtorch_cuda.so's dependencies (NCCL, cuDNN, ...) from the wheel's nvidia-*
# packages, not from the CUDA toolkit's older copies. Every nvidia/*/lib folder, sorted for stable output.
RPATH_LINK=$(find "$SITE_PACKAGES/nvidia" -mindepth 2 -maxdepth 2 -type d -name lib 2>/dev/null | sort | paste -sd: -)
RPATH_LINK=${RPATH_LINK:+$RPATH_LINK:}$TORCH_LIB
LINK_FLAGS="${LDFLAGS:+$LDFLAGS }-Wl,-rpath-link,$RPATH_LINK"

# Trap 3: the wheel bundles fmt 12 headers in torch/include/fmt, and its -isystem folder comes before
# /usr/include, so Debian's spdlog (built against Debian's fmt 9, libfmt.so.9) would compile against the
# wheel's fmt and fail (`'basic_runtime' is not a member of 'fmt'`), or worse, mismatch libfmt's ABI. A
# folder holding only a link to the system fmt, put ahead of every other include folder by a file CMake
# runs right after project(), gives all sources the fmt that spdlog links. Both live in the build folder.
COMPAT_DIR=$(mkdir -p "$BUILD_DIR" && cd "$BUILD_DIR" && pwd)/wheel-compat
PROJECT_INCLUDE=""
SYSTEM_FMT=${SYSTEM_FMT_INCLUDE:-/usr/include}/fmt
if [ -d "$TORCH_DIR/include/fmt" ] && [ -f "$SYSTEM_FMT/core.h" ]; then
  mkdir -p "$COMPAT_DIR/include"
  ln -sfn "$SYSTEM_FMT" "$COMPAT_DIR/include/fmt"
  PROJECT_INCLUDE=$COMPAT_DIR/project_include.cmake
  content="# Generated by scripts/build_cuda.sh: the system fmt ahead of the torch wheel's bundled copy.
include_directories(BEFORE SYSTEM \"$COMPAT_DIR/include\")"
  # Rewrite only on change: CMake re-runs whenever this file is newer than its cache.
  [ "$(cat "$PROJECT_INCLUDE" 2>/dev/null)" = "$content" ] || printf '%s\n' "$content" > "$PROJECT_INCLUDE"
  log "fmt: $SYSTEM_FMT ahead of the wheel's $TORCH_DIR/include/fmt (for Debian's spdlog)"
fi

cache_get() { sed -n "s/^$1:[A-Z]*=//p" "$BUILD_DIR/CMakeCache.txt" 2>/dev/null; }
if [ "$RECONFIGURE" = 0 ] && [ -f "$BUILD_DIR/build.ninja" ]; then
  # Configured before: redo it if the cache does not pin this venv's torch (another venv, or an older
  # version of this script).
  if [ "$(cache_get TORCH_LIBRARY)" != "$TORCH_LIB/libtorch.so" ] || [ "$(cache_get c10_LIBRARY)" != "$TORCH_LIB/libc10.so" ] \
     || [ "$(cache_get CMAKE_PROJECT_INCLUDE)" != "$PROJECT_INCLUDE" ] \
     || [ "$(cache_get DSMIL_TORCH_PYTHON)" != "$VPY" ]; then
    log "$BUILD_DIR was configured for another torch or with other settings: reconfiguring"
    RECONFIGURE=1
  fi
fi
if [ "$RECONFIGURE" = 1 ] || [ ! -f "$BUILD_DIR/build.ninja" ]; then
  log "configuring $BUILD_DIR ($BUILD_TYPE, Ninja)"
  t0=$(now)
  # Trap 1: pin libtorch.so and libc10.so to the wheel's, or TorchConfig finds Debian's in /usr/lib.
  # shellcheck disable=SC2086
  cmake -S . -B "$BUILD_DIR" -G Ninja \
    -DCMAKE_BUILD_TYPE="$BUILD_TYPE" \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
    -DTorch_DIR="$TORCH_PREFIX/Torch" \
    -DTORCH_LIBRARY="$TORCH_LIB/libtorch.so" \
    -Dc10_LIBRARY="$TORCH_LIB/libc10.so" \
    -DCMAKE_CUDA_COMPILER="$CUDACXX" \
    -DCUDAToolkit_ROOT="$CUDAToolkit_ROOT" \
    -DCMAKE_EXE_LINKER_FLAGS="$LINK_FLAGS" \
    -DCMAKE_SHARED_LINKER_FLAGS="$LINK_FLAGS" \
    -DCMAKE_PROJECT_INCLUDE="$PROJECT_INCLUDE" \
    -DDSMIL_TORCH_PYTHON="$VPY" \
    ${CMAKE_ARGS:-}
  log "configured in $(( $(now) - t0 )) s"
else
  log "$BUILD_DIR already configured (use --reconfigure to redo)"
fi
for pin in TORCH_LIBRARY=libtorch.so c10_LIBRARY=libc10.so; do
  [ "$(cache_get "${pin%%=*}")" = "$TORCH_LIB/${pin#*=}" ] \
    || die "$BUILD_DIR/CMakeCache.txt has ${pin%%=*}='$(cache_get "${pin%%=*}")', not $TORCH_LIB/${pin#*=}"
done

# --- 3. Build ----------------------------------------------------------------------------------------
log "building $BUILD_DIR with -j$JOBS"
t0=$(now)
# shellcheck disable=SC2086
cmake --build "$BUILD_DIR" -j "$JOBS" ${BUILD_TARGETS:+--target $BUILD_TARGETS}
log "built in $(( $(now) - t0 )) s"

# --- 4. Check what the test binary really links ------------------------------------------------------
# Every libtorch*/libc10* the loader resolves must be the wheel's: Debian's 1.13 shows up as
# /usr/lib/x86_64-linux-gnu/libtorch_cpu.so.1.13 and the like (trap 1), mixing two torch versions.
check_links() {  # $1: binary, $2: 1 to list what it resolved
  local bin=$1 verbose=${2:-0} ldd_out torch_real line name path bad=0
  ldd_out=$(ldd "$bin") || die "ldd $bin failed"
  torch_real=$(readlink -f "$TORCH_LIB")
  if echo "$ldd_out" | grep -q 'not found'; then
    echo "$ldd_out" | grep 'not found' >&2
    die "$bin has unresolved shared libraries"
  fi
  while read -r line; do
    name=${line%% *}
    path=$(echo "$line" | sed -n 's/.*=> \(\S*\) .*/\1/p')
    [ "$verbose" = 0 ] || log "  $name => $path"
    [ "$(dirname "$(readlink -f "$path")")" = "$torch_real" ] || { bad=1; log "  $name => $path: NOT the wheel's"; }
  done < <(echo "$ldd_out" | grep -E '^\s*lib(torch|c10)[a-z_]*\.so' | sed 's/^[[:space:]]*//')
  [ "$bad" = 0 ] || die "$bin links libtorch/libc10 from outside $TORCH_LIB (Debian's 1.13?); see trap 1 in cuda-build.md"
  for lib in libtorch_cpu.so libc10.so; do
    echo "$ldd_out" | grep -qE "^\s*$lib => " || die "$bin does not link $lib (expected $TORCH_LIB/$lib)"
  done
  log "ldd OK: $bin: libtorch_cpu.so, libc10.so and every other libtorch*/libc10* from $TORCH_LIB"
}
TEST_BIN=$BUILD_DIR/tests/dsmil_tests
if [ -x "$TEST_BIN" ]; then
  log "checking the libraries of $TEST_BIN with ldd"
  check_links "$TEST_BIN" 1
elif [ "$RUN_TESTS" = 1 ]; then
  die "$TEST_BIN not built (configured with -DDSMIL_BUILD_TESTS=OFF?)"
else
  log "no test binary ($TEST_BIN); skipping its ldd check"
fi
# The other programs link the same libraries; check them too, briefly.
for bin in "$BUILD_DIR"/train/dsmil_* "$BUILD_DIR"/eval/dsmil_* "$BUILD_DIR"/bench/dsmil_*; do
  if [ -f "$bin" ] && [ -x "$bin" ]; then check_links "$bin"; fi
done

# --- 5. Tests (CPU path: the wheel's CUDA build runs without a GPU) ------------------------------------
if [ "$RUN_TESTS" = 1 ]; then
  log "running tests in $BUILD_DIR"
  t0=$(now)
  # shellcheck disable=SC2086
  ctest --test-dir "$BUILD_DIR" --output-on-failure ${CTEST_ARGS:-}
  log "tests passed in $(( $(now) - t0 )) s"
fi
log "done: $BUILD_DIR (torch $TORCH_VERSION)"
