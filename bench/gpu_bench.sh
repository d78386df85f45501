#!/usr/bin/env bash
# dsmil on a GPU machine (issue 16), as one prepared script. It
#   0. checks what the build needs (compiler, CMake, Ninja, nvcc, a CUDA torch, and the headers and libraries
#      CMakeLists.txt finds: HDF5, MPI, spdlog, cxxopts, nlohmann-json, protobuf, ISA-L, cairo, OpenSlide,
#      zlib, GTest) and prints every missing one at once, instead of failing inside CMake or apt;
#   1. builds dsmil against this machine's CUDA torch (scripts/build_cuda.sh, through a venv that sees the
#      system's torch, so nothing is downloaded; the Debian package step is skipped);
#   2. runs the checks that need a GPU: the unit tests of the device-resident gradient reduction, the
#      communicator's tests over c10d NCCL (mpirun -np 2 with two GPUs, else -np 1), a short --comm nccl
#      training run; and, where the host's CPU has AMX, the CPU bf16 step's figures (issue 15);
#   3. generates one channel: 200 slides (160 train + 40 validation) of N = 10,000 instances, D = 1024
#      (dsmil_make_bags; a Python stand-in of the same sizes when dsmil could not be built);
#   4. times on the same GPU dsmil_train --device cuda (RAM cache, then --cache gpu) and
#      bench/reference_train.py --device cuda (the authors' loop), and mpirun -np 2 dsmil_train --comm nccl
#      when there are two GPUs;
#   5. prints instances/s of each, their ratio, the GPU busy fraction and the 2-GPU scaling.
# When dsmil cannot be built (prerequisites missing, listed first), the reference is still timed.
#
# Measure: every output line of a run is stamped with the time it appeared; the steady state runs from the
# end of epoch 1 to the end of the last epoch (start-up, the RAM cache fill and the reference's .pt
# conversion left out alike); instances/s = (train + validation instances) x (epochs - 1) / that time; GPU
# busy = the mean of `nvidia-smi --query-gpu=utilization.gpu` samples (every 200 ms) in that window.
#
# Where one command may run 10 minutes at most, run `--build-only` first, then `--skip-build` (the whole
# run's length has not been measured: estimated build ~4 min on 16 cores, channel ~1, runs ~5).
#
# Usage: bench/gpu_bench.sh [--dry-run] [--check] [--build-only] [--skip-build]
#   --dry-run     print the checks' findings and every step's command, run nothing (works anywhere)
#   --check       only step 0: list what is missing, exit 1 if anything is
#   --build-only  steps 0-2
#   --skip-build  reuse an existing $BUILD_DIR (steps 0, 3-5)
# Environment:
#   BUILD_DIR    CUDA build folder (default: build-cuda)
#   WORK         where the channel and the runs' outputs go (default: $BUILD_DIR/gpu-bench; ~17 GB with the
#                reference's .pt copies)
#   EPOCHS       epochs of each run, >= 2 (default: 3)
#   GPU          the GPU index of the one-GPU runs (default: 0)
#   PYTHON       python3 with a CUDA torch, h5py, numpy, scikit-learn (default: python3)
#   TORCH_VENV   venv holding torch for scripts/build_cuda.sh (default: one made here with
#                --system-site-packages over $PYTHON)
#   OUT          when set, a copy of the summary goes to $OUT/gpu_bench.txt
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

log() { echo "[gpu-bench] $*"; }
die() { echo "[gpu-bench] ERROR: $*" >&2; exit 1; }

DRY_RUN=0 SKIP_BUILD=0 CHECK_ONLY=0 BUILD_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    --skip-build) SKIP_BUILD=1 ;;
    --build-only) BUILD_ONLY=1 ;;
    --check) CHECK_ONLY=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $arg (try --help)" ;;
  esac
done

BUILD_DIR=${BUILD_DIR:-build-cuda}
WORK=${WORK:-$BUILD_DIR/gpu-bench}
EPOCHS=${EPOCHS:-3}
GPU=${GPU:-0}
PYTHON=${PYTHON:-python3}
INSTANCES=10000 DIM=1024 TRAIN_SLIDES=160 VAL_SLIDES=40
TRAIN=$BUILD_DIR/train/dsmil_train
MAKE_BAGS=$BUILD_DIR/bench/dsmil_make_bags
[ "$EPOCHS" -ge 2 ] || die "EPOCHS must be >= 2 (the steady state starts after epoch 1)"
export DSMIL_SAGEMAKER_ROOT=/nonexistent  # dsmil_train outside any SageMaker tree

# Runs a step, or prints it under --dry-run.
step() {
  if [ "$DRY_RUN" = 1 ]; then printf '[gpu-bench] would run:'; printf ' %q' "$@"; echo; return 0; fi
  "$@"
}

# --- 0. What this machine has ---------------------------------------------------------------------------
MISSING=()
need_cmd() {  # need_cmd COMMAND WHAT
  command -v "$1" > /dev/null 2>&1 || MISSING+=("$2 (no '$1' on PATH)")
}
need_header() {  # need_header WHAT HEADER: found under one of the usual include folders
  local d
  for d in /usr/include /usr/local/include /usr/include/hdf5/serial; do
    [ -e "$d/$2" ] && return 0
  done
  MISSING+=("$1 (no $2 header)")
}
need_pc() {  # need_pc MODULE WHAT
  if command -v pkg-config > /dev/null 2>&1 && pkg-config --exists "$1"; then return 0; fi
  MISSING+=("$2 (pkg-config finds no '$1')")
}
check_machine() {
  need_cmd c++ "a C++20 compiler (g++ >= 11)"
  need_cmd cmake "CMake >= 3.22"
  need_cmd ninja "Ninja (scripts/build_cuda.sh configures with -G Ninja)"
  need_cmd pkg-config "pkg-config"
  command -v nvcc > /dev/null 2>&1 || [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ] \
    || MISSING+=("CUDA's nvcc (the torch wheel's TorchConfig.cmake needs a toolkit)")
  need_cmd nvidia-smi "the NVIDIA driver's nvidia-smi"
  "$PYTHON" -W ignore -c 'import torch, sys; sys.exit(0 if torch.version.cuda else 1)' 2> /dev/null \
    || MISSING+=("a CUDA torch in $PYTHON")
  need_header "HDF5 C/C++ development files (libhdf5-dev)" hdf5.h
  need_cmd mpicxx "Open MPI development files (libopenmpi-dev)"
  need_cmd mpirun "Open MPI's mpirun (openmpi-bin)"
  need_header "spdlog (libspdlog-dev)" spdlog/spdlog.h
  need_header "fmt (libfmt-dev, spdlog's)" fmt/core.h
  need_header "cxxopts (libcxxopts-dev)" cxxopts.hpp
  need_header "nlohmann-json (nlohmann-json3-dev)" nlohmann/json.hpp
  need_header "zlib (zlib1g-dev)" zlib.h
  need_header "protobuf (libprotobuf-dev)" google/protobuf/message.h
  need_cmd protoc "protobuf's compiler (protobuf-compiler)"
  need_pc libisal "ISA-L (libisal-dev)"
  need_pc cairo "cairo (libcairo2-dev)"
  need_pc openslide "OpenSlide (libopenslide-dev)"
  need_header "GoogleTest (libgtest-dev libgmock-dev)" gtest/gtest.h
}
check_machine
# The reference needs these whatever happens to the build.
"$PYTHON" -W ignore -c 'import torch, h5py, numpy, sklearn' 2> /dev/null || REF_MISSING="torch, h5py, numpy or scikit-learn"
if [ "${#MISSING[@]}" -gt 0 ]; then
  log "missing for the dsmil build (${#MISSING[@]}):"
  for m in "${MISSING[@]}"; do echo "  - $m"; done
  log "scripts/install_deps.sh names the Debian packages; this script installs nothing (no package registry"
  log "is assumed reachable). dsmil is not built: only the reference is timed."
  CAN_BUILD=0
else
  log "every prerequisite of the CUDA build is here"
  CAN_BUILD=1
fi
[ -z "${REF_MISSING:-}" ] || log "missing for bench/reference_train.py: $REF_MISSING in $PYTHON"
if [ "$CHECK_ONLY" = 1 ]; then [ "${#MISSING[@]}" = 0 ] && [ -z "${REF_MISSING:-}" ]; exit; fi
[ "$DRY_RUN" = 0 ] || CAN_BUILD=1                                   # show every step
if [ "$SKIP_BUILD" = 1 ] && [ -x "$TRAIN" ]; then CAN_BUILD=1; fi  # built before
[ "$CAN_BUILD" = 1 ] || [ "$BUILD_ONLY" = 0 ] || die "--build-only, but dsmil cannot be built here (above)"

if [ "$DRY_RUN" = 1 ]; then
  NGPUS=2
  log "dry run: assuming 2 GPUs"
else
  NGPUS=$(nvidia-smi -L | grep -c '^GPU ' || true)
  [ "$NGPUS" -ge 1 ] || die "nvidia-smi lists no GPU"
  [ "$GPU" -lt "$NGPUS" ] || die "GPU=$GPU, but nvidia-smi lists $NGPUS GPU(s)"
  log "$NGPUS GPU(s): $(nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c | paste -sd, -)"
fi
step mkdir -p "$WORK"

# --- 1. Build against the CUDA torch --------------------------------------------------------------------
if [ "$CAN_BUILD" = 0 ]; then
  log "steps 1-2 skipped: dsmil cannot be built here"
elif [ "$SKIP_BUILD" = 1 ]; then
  [ "$DRY_RUN" = 1 ] || [ -x "$TRAIN" ] || die "--skip-build, but $TRAIN is not built"
else
  if [ -z "${TORCH_VENV:-}" ]; then
    # This machine's own torch, seen from a venv (build_cuda.sh wants one), so nothing is downloaded.
    case $BUILD_DIR in
      /*) TORCH_VENV=$BUILD_DIR-venv ;;
      *) TORCH_VENV=$REPO/$BUILD_DIR-venv ;;
    esac
    [ -x "$TORCH_VENV/bin/python" ] || step "$PYTHON" -m venv --system-site-packages "$TORCH_VENV"
  fi
  # DSMIL_SKIP_DEPS: no apt (the packages were checked above). Only the targets this script runs.
  step env BUILD_DIR="$BUILD_DIR" TORCH_VENV="$TORCH_VENV" DSMIL_SKIP_DEPS=1 \
    BUILD_TARGETS="dsmil_train dsmil_make_bags dsmil_tests dsmil_mpi_tests dsmil_compare_runs dsmil_bench_step" \
    scripts/build_cuda.sh
fi

# --- 2. The checks that need a GPU ----------------------------------------------------------------------
CHECKS=()  # "name: passed|FAILED ..." for the summary; a failed check does not stop the timings
check() {  # check NAME COMMAND...
  local name=$1
  shift
  if [ "$DRY_RUN" = 1 ]; then step "$@"; return 0; fi
  log "check $name"
  if "$@" > "$WORK/check_$name.log" 2>&1; then
    CHECKS+=("$name: passed")
  else
    tail -n 20 "$WORK/check_$name.log" >&2
    CHECKS+=("$name: FAILED ($WORK/check_$name.log)")
  fi
}
if [ "$CAN_BUILD" = 1 ] && [ "$SKIP_BUILD" = 0 ]; then
  # The flat gradient reduced where it lies (NCCL) or through the host (MPI); device resolution; the bf16
  # step and validation's forward on the GPU.
  check unit_gpu "$BUILD_DIR/tests/dsmil_tests" \
    --gtest_filter='SumFlatGradients.*:ResolveDevice.*:ChooseTransport.*:GpuAssignment.*:*Bf16*:StepForward.*'
  # The communicator's closed-form tests over c10d NCCL, one rank per GPU (CPU tensors staged through it).
  RANKS=$((NGPUS >= 2 ? 2 : 1))
  check nccl_communicator mpirun -np "$RANKS" --allow-run-as-root --bind-to none \
    "$BUILD_DIR/tests/dsmil_mpi_tests" --comm nccl
  # A short training run over NCCL (with 2 ranks: the device-resident gradient all-reduce at every step).
  step "$MAKE_BAGS" --out "$WORK/small" --bags 24 --dim 64 --seed 1 --task-seed 3
  check nccl_train mpirun -np "$RANKS" --allow-run-as-root --bind-to none -x DSMIL_SAGEMAKER_ROOT "$TRAIN" \
    --train "$WORK/small" --epochs 2 --device cuda --comm nccl --no-resume true --tensorboard-dir none \
    --model-dir "$WORK/small_m" --output-dir "$WORK/small_o" --checkpoint-dir "$WORK/small_c"
  if [ "$DRY_RUN" = 0 ] && ! grep -q 'collectives over c10d nccl' "$WORK/check_nccl_train.log"; then
    CHECKS+=("nccl_train: FAILED (no '[dist] collectives over c10d nccl' line)")
  fi
  # The GPU's own path (loss and targets on the device, --cache gpu, patch dropout's pinned copy) trains the
  # CPU's model: one process each, the same seed and draws, 2 epochs at lr 1e-4 (Adam moves a weight by at
  # most lr per step), weights and losses within 1e-4.
  SAME=(--train "$WORK/small" --epochs 2 --lr 1e-4 --seed 3 --dropout-patch 0.2 --no-resume true
    --tensorboard-dir none)
  check gpu_train "$TRAIN" "${SAME[@]}" --device cuda --cache gpu --cache-budget 1 --model-dir "$WORK/gpu_m" \
    --output-dir "$WORK/gpu_o" --checkpoint-dir "$WORK/gpu_c"
  check cpu_train "$TRAIN" "${SAME[@]}" --device cpu --model-dir "$WORK/cpu_m" --output-dir "$WORK/cpu_o" \
    --checkpoint-dir "$WORK/cpu_c"
  check gpu_vs_cpu "$BUILD_DIR/tests/dsmil_compare_runs" "$WORK/cpu_m/model.pth" "$WORK/gpu_m/model.pth" \
    "$WORK/cpu_o/metrics.json" "$WORK/gpu_o/metrics.json" 1e-4
  # Packed steps (--bags-per-step 4): the segment passes as libtorch ops on the GPU against the CPU's loops.
  check gpu_train_packed "$TRAIN" "${SAME[@]}" --bags-per-step 4 --device cuda --model-dir "$WORK/gpu_pm" \
    --output-dir "$WORK/gpu_po" --checkpoint-dir "$WORK/gpu_pc"
  check cpu_train_packed "$TRAIN" "${SAME[@]}" --bags-per-step 4 --device cpu --model-dir "$WORK/cpu_pm" \
    --output-dir "$WORK/cpu_po" --checkpoint-dir "$WORK/cpu_pc"
  check gpu_vs_cpu_packed "$BUILD_DIR/tests/dsmil_compare_runs" "$WORK/cpu_pm/model.pth" "$WORK/gpu_pm/model.pth" \
    "$WORK/cpu_po/metrics.json" "$WORK/gpu_po/metrics.json" 1e-4
  # --precision bf16 on the GPU (cuBLAS bfloat16 products, float32 master weights; its step is held to the fp32
  # step on the GPU by unit_gpu's Bf16Step.OnTheGpuWithinBf16Tolerance): a whole run trains with it.
  check gpu_train_bf16 "$TRAIN" "${SAME[@]}" --precision bf16 --device cuda --cache gpu --cache-budget 1 \
    --model-dir "$WORK/gpu_bm" --output-dir "$WORK/gpu_bo" --checkpoint-dir "$WORK/gpu_bc"
  if [ "$DRY_RUN" = 0 ] && ! grep -q 'precision bf16' "$WORK/check_gpu_train_bf16.log"; then
    CHECKS+=("gpu_train_bf16: FAILED (no 'precision bf16' line)")
  fi
  # Issue 15's last figure, on this host's CPU where it has AMX (the development machines have none): the bf16
  # step against the fp32 step, two threads on two cores as the issue's figures (products through the wheel's
  # libtorch, whose oneDNN uses AMX). The table lands in check_cpu_bf16_amx.log and in the summary.
  if [ "$DRY_RUN" = 1 ] || grep -qw amx_bf16 /proc/cpuinfo; then
    check cpu_bf16_amx taskset -c 0,1 "$BUILD_DIR/bench/dsmil_bench_step" --threads 2 --rounds 5 --bf16-only
  else
    CHECKS+=("cpu_bf16_amx: skipped (no amx_bf16 in /proc/cpuinfo)")
  fi
  for c in "${CHECKS[@]}"; do log "check $c"; done
fi
if [ "$BUILD_ONLY" = 1 ]; then
  log "--build-only: done"
  exit 0
fi

# --- 3. The channel -------------------------------------------------------------------------------------
# Every bag exactly N instances: log-sigma 0 around log(N).
LOG_N=$(awk -v n="$INSTANCES" 'BEGIN { printf "%.10f", log(n) }')
# Without dsmil_make_bags: random features of the same sizes, labels half and half (how fast either trainer
# goes does not depend on what the features hold).
python_bags() {  # python_bags DIR SLIDES PREFIX SEED
  "$PYTHON" -c '
import os, sys, h5py, numpy as np
out, slides, prefix, seed, n, d = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
rng = np.random.default_rng(seed)
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "labels.csv"), "w") as labels:
    labels.write("slide_id,label\n")
    for i in range(slides):
        name = "%s%04d" % (prefix, i)
        with h5py.File(os.path.join(out, name + ".h5"), "w") as f:
            f.create_dataset("features", data=rng.standard_normal((n, d), dtype=np.float32))
        labels.write("%s,%d\n" % (name, i % 2))
' "$@" "$INSTANCES" "$DIM"
}
if [ "$DRY_RUN" = 1 ] || [ ! -f "$WORK/train/labels.csv" ] || [ ! -f "$WORK/validation/labels.csv" ]; then
  step rm -rf "$WORK/train" "$WORK/validation"
  if [ "$CAN_BUILD" = 1 ]; then
    step "$MAKE_BAGS" --out "$WORK/train" --bags "$TRAIN_SLIDES" --dim "$DIM" --log-mean "$LOG_N" --log-sigma 0 \
      --seed 1 --task-seed 7
    step "$MAKE_BAGS" --out "$WORK/validation" --bags "$VAL_SLIDES" --dim "$DIM" --log-mean "$LOG_N" \
      --log-sigma 0 --seed 2 --task-seed 7 --prefix val_
  else
    step python_bags "$WORK/train" "$TRAIN_SLIDES" slide_ 1
    step python_bags "$WORK/validation" "$VAL_SLIDES" val_ 2
  fi
else
  log "reusing the channel in $WORK"
fi
EPOCH_INSTANCES=$(((TRAIN_SLIDES + VAL_SLIDES) * INSTANCES))
if [ "$DRY_RUN" = 0 ]; then
  EPOCH_INSTANCES=$("$PYTHON" -c '
import glob, sys, h5py
print(sum(h5py.File(f, "r")["features"].shape[0] for d in sys.argv[1:] for f in glob.glob(d + "/*.h5")))' \
    "$WORK/train" "$WORK/validation")
fi
log "instances per epoch (train + validation): $EPOCH_INSTANCES"

# --- 4. Timed runs, nvidia-smi sampling alongside -------------------------------------------------------
stamp() { while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done; }
# run NAME GPU_LIST COMMAND...: the output, each line stamped, into $WORK/NAME.log; utilization samples of
# the GPUs in GPU_LIST, stamped, into $WORK/NAME.util.
run() {
  local name=$1 gpus=$2
  shift 2
  if [ "$DRY_RUN" = 1 ]; then step "$@"; return 0; fi
  nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -i "$gpus" -lms 200 | stamp \
    > "$WORK/$name.util" &
  local sampler=$! rc=0
  log "$name: running"
  "$@" 2>&1 | stamp > "$WORK/$name.log" || rc=$?
  pkill -P "$sampler" 2> /dev/null || true
  kill "$sampler" 2> /dev/null || true
  wait "$sampler" 2> /dev/null || true
  if [ "$rc" != 0 ]; then
    tail -n 30 "$WORK/$name.log" >&2
    log "$name failed (exit $rc); log: $WORK/$name.log"
  fi
}
# figures NAME PATTERN: "instances/s busy%" of the steady state (the log lines matching PATTERN, one per
# finished epoch, give its start and end), or "n/a n/a".
figures() {
  local a b n
  read -r a b n < <(grep -E -- "$2" "$WORK/$1.log" | awk 'NR == 1 { a = $1 } { b = $1; n++ } END { print a, b, n + 0 }')
  if [ "$n" -lt 2 ]; then
    echo "n/a n/a"
    return
  fi
  awk -v a="$a" -v b="$b" -v n="$n" -v inst="$EPOCH_INSTANCES" -F'[ ,]+' '
    $1 >= a && $1 <= b { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) { s += $i; m++ } }
    END { printf "%.0f %s\n", inst * (n - 1) / (b - a), m ? sprintf("%.0f", s / m) : "n/a" }' "$WORK/$1.util"
}

COMMON=(--train "$WORK/train" --validation "$WORK/validation" --epochs "$EPOCHS" --stop-epochs "$EPOCHS"
  --lr 1e-4 --seed 1 --cache ram32 --no-resume true --tensorboard-dir none)
DSMIL_EPOCH='\[train\] epoch [0-9]+/[0-9]+: train_loss'
REFERENCE_EPOCH='epoch=[0-9]+ seconds='
if [ "$CAN_BUILD" = 1 ]; then
  run dsmil_1gpu "$GPU" env CUDA_VISIBLE_DEVICES="$GPU" "$TRAIN" "${COMMON[@]}" --device cuda \
    --model-dir "$WORK/m_1gpu" --output-dir "$WORK/o_1gpu" --checkpoint-dir "$WORK/c_1gpu"
  # The features kept on the GPU in float16 (about 4 GB here): no host-to-device copy per bag after epoch 1.
  run dsmil_1gpu_cache "$GPU" env CUDA_VISIBLE_DEVICES="$GPU" "$TRAIN" "${COMMON[@]}" --device cuda --cache gpu \
    --cache-budget 24 --model-dir "$WORK/m_1gpu_cache" --output-dir "$WORK/o_1gpu_cache" \
    --checkpoint-dir "$WORK/c_1gpu_cache"
  run dsmil_1gpu_bf16 "$GPU" env CUDA_VISIBLE_DEVICES="$GPU" "$TRAIN" "${COMMON[@]}" --device cuda \
    --precision bf16 --model-dir "$WORK/m_1gpu_bf16" --output-dir "$WORK/o_1gpu_bf16" \
    --checkpoint-dir "$WORK/c_1gpu_bf16"
fi
run reference_1gpu "$GPU" env CUDA_VISIBLE_DEVICES="$GPU" PYTHONUNBUFFERED=1 "$PYTHON" bench/reference_train.py \
  --train "$WORK/train" --validation "$WORK/validation" --epochs "$EPOCHS" --stop-epochs "$EPOCHS" --lr 1e-4 \
  --device cuda --work-dir "$WORK/reference"
SCALING_STATUS=""
if [ "$NGPUS" -lt 2 ]; then
  SCALING_STATUS="skipped: one GPU"
elif [ "$CAN_BUILD" = 0 ]; then
  SCALING_STATUS="skipped: dsmil not built"
else
  run dsmil_2gpu "0,1" env CUDA_VISIBLE_DEVICES=0,1 mpirun -np 2 --allow-run-as-root --bind-to none \
    -x DSMIL_SAGEMAKER_ROOT "$TRAIN" "${COMMON[@]}" --device cuda --comm nccl --model-dir "$WORK/m_2gpu" \
    --output-dir "$WORK/o_2gpu" --checkpoint-dir "$WORK/c_2gpu"
fi
if [ "$DRY_RUN" = 1 ]; then
  log "dry run: nothing was run"
  exit 0
fi

# --- 5. Figures -----------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2fx", a / b; else print "n/a" }'; }
summary() {
  local name pattern r t dsmil="" cached="" bf16="" reference="" two=""
  echo "=== dsmil GPU bench: $((TRAIN_SLIDES + VAL_SLIDES)) slides, $INSTANCES instances each, D = $DIM, $EPOCHS epochs ==="
  echo "GPU: $(nvidia-smi --query-gpu=name --format=csv,noheader -i "$GPU");" \
    "torch $("$PYTHON" -W ignore -c 'import torch; print(torch.__version__)' 2> /dev/null || echo '?')"
  printf '%-16s %14s %9s\n' run "instances/s" "GPU busy"
  for name in dsmil_1gpu dsmil_1gpu_cache dsmil_1gpu_bf16 reference_1gpu dsmil_2gpu; do
    [ -f "$WORK/$name.log" ] || continue
    pattern=$DSMIL_EPOCH
    [ "$name" != reference_1gpu ] || pattern=$REFERENCE_EPOCH
    read -r r t < <(figures "$name" "$pattern")
    printf '%-16s %14s %8s%%\n' "$name" "$r" "$t"
    case "$name" in
      dsmil_1gpu) dsmil=$r ;;
      dsmil_1gpu_cache) cached=$r ;;
      dsmil_1gpu_bf16) bf16=$r ;;
      reference_1gpu) reference=$r ;;
      dsmil_2gpu) two=$r ;;
    esac
  done
  echo "(steady state: end of epoch 1 to end of epoch $EPOCHS; instances = train + validation)"
  echo "dsmil / reference (same GPU): $(ratio "$dsmil" "$reference") (target >= 10);" \
    "with --cache gpu: $(ratio "$cached" "$reference"); --precision bf16: $(ratio "$bf16" "$reference")"
  if [ -n "$SCALING_STATUS" ]; then
    echo "2 GPUs / 1 GPU: $SCALING_STATUS"
  else
    echo "2 GPUs / 1 GPU: $(ratio "$two" "$dsmil") (target >= 1.8)"
  fi
  echo "GPU busy target: >= 70% in steady state. Logs and samples: $WORK"
  [ "${#MISSING[@]}" = 0 ] || echo "dsmil not built here; missing: $(IFS=';' && echo "${MISSING[*]}")"
  for c in "${CHECKS[@]}"; do echo "check $c"; done
  if [ -f "$WORK/check_cpu_bf16_amx.log" ]; then
    echo "CPU bf16 step vs fp32 step (issue 15: >= 2.5x at N >= 1000), $(grep -m1 -o 'model name.*' /proc/cpuinfo):"
    grep '^|' "$WORK/check_cpu_bf16_amx.log" || true
  fi
}
echo
if [ -n "${OUT:-}" ]; then summary | tee "$OUT/gpu_bench.txt"; else summary; fi
