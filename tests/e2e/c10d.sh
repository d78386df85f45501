#!/usr/bin/env bash
# End-to-end over c10d. With Gloo in the build (Debian's libtorch + libgloo-dev): `mpirun -np 2 dsmil_train
# --comm gloo` (gradients all-reduced by libtorch's ProcessGroupGloo, bootstrapped over MPI) trains the same
# model as `--comm mpi` (weights and metrics within 1e-6, the same predictions) and says which transport it
# used. In every build (the CUDA-wheel one included, which CI runs on a machine without a GPU): `--comm nccl`
# without a GPU is one clear error within seconds on every rank, never a wait in the store, and `--comm auto`
# on the CPU is MPI.
#   usage: c10d.sh BUILD_DIR MPIRUN HAVE_GLOO(0|1)
set -euo pipefail
BUILD=$1
MPIRUN=("$2" --oversubscribe --allow-run-as-root -np 2)
HAVE_GLOO=$3
source "$(dirname "$0")/lib.sh"  # WORK (removed at exit), fail, has

"$BUILD/bench/dsmil_make_bags" --out "$WORK/train" --bags 41 --dim 32 --seed 1 --task-seed 3 > /dev/null
"$BUILD/bench/dsmil_make_bags" --out "$WORK/test" --bags 11 --dim 32 --seed 2 --task-seed 3 --prefix test_ > /dev/null

# --- 1. --comm nccl without a GPU: refused at once, on every rank ---------------------------------------
# `timeout`: a wait in the store (the bug this guards against) fails the test instead of holding CI.
for device in cpu auto; do
  start=$(date +%s)
  rc=0
  timeout 60 "${MPIRUN[@]}" "$BUILD/train/dsmil_train" --train "$WORK/train" --epochs 1 --threads 1 --comm nccl \
    --device "$device" --model-dir "$WORK/m_nccl" --output-dir "$WORK/o_nccl" > "$WORK/nccl.log" 2>&1 || rc=$?
  [ "$rc" != 124 ] || { cat "$WORK/nccl.log"; fail "--comm nccl --device $device hung (killed after 60 s)"; }
  [ "$rc" != 0 ] || fail "--comm nccl --device $device on a machine without a GPU exited 0"
  has "$WORK/nccl.log" "dsmil_train: error: '--comm nccl': "
  [ "$(grep -c "dsmil_train: error: '--comm nccl'" "$WORK/nccl.log")" = 2 ] || { cat "$WORK/nccl.log"; fail "not one error per rank"; }
  echo "--comm nccl --device $device: refused in $(( $(date +%s) - start )) s"
done
if grep -q 'DSMIL_HAVE_C10D_NCCL:INTERNAL=1' "$BUILD/CMakeCache.txt"; then
  has "$WORK/nccl.log" "CUDA sees none"  # the CUDA build: the back end is there, the GPU is not
else
  has "$WORK/nccl.log" "no c10d nccl"    # Debian's CPU libtorch: no NCCL at all (checked before the GPU)
fi

# --- 2. --comm auto on the CPU is MPI ---------------------------------------------------------------------
ARGS=(--train "$WORK/train" --test "$WORK/test" --epochs 3 --lr 0.002 --threads 1 --dropout-patch 0.2
  --passing-v true --dropout-node 0.1 --standardize true --accumulate 2)
"${MPIRUN[@]}" "$BUILD/train/dsmil_train" "${ARGS[@]}" --comm auto --epochs 1 --model-dir "$WORK/m_auto" \
  --output-dir "$WORK/o_auto" > "$WORK/auto.log" 2>&1 || { cat "$WORK/auto.log"; fail "--comm auto failed"; }
has "$WORK/auto.log" '\[dist\] collectives over MPI'  # not c10d

if [ "$HAVE_GLOO" != 1 ]; then
  has <(timeout 60 "${MPIRUN[@]}" "$BUILD/train/dsmil_train" --train "$WORK/train" --comm gloo --model-dir "$WORK/m_g" \
    --output-dir "$WORK/o_g" 2>&1 || true) "dsmil_train: error: '--comm gloo': this build of dsmil has no c10d gloo"
  echo "c10d: no Gloo in this build; the --comm nccl, auto and gloo refusals checked"
  exit 0
fi

# --- 3. --comm gloo trains the model --comm mpi trains ------------------------------------------------------
# Odd set sizes (uneven validation shards: allgather of different lengths), dropout and --standardize
# (broadcasts), --accumulate 2 (4 bags a step over 2 ranks).
for comm in mpi gloo; do
  "${MPIRUN[@]}" "$BUILD/train/dsmil_train" "${ARGS[@]}" --comm "$comm" --model-dir "$WORK/m_$comm" \
    --output-dir "$WORK/o_$comm" > "$WORK/$comm.log" 2>&1 || { cat "$WORK/$comm.log"; fail "--comm $comm failed"; }
done
has "$WORK/gloo.log" '\[dist\] collectives over c10d gloo (store 127.0.0.1:[0-9]*, device cpu)'
has "$WORK/mpi.log" '\[dist\] collectives over MPI'
if grep -q 'c10d' "$WORK/mpi.log"; then fail "--comm mpi went through c10d"; fi
"$BUILD/tests/dsmil_compare_runs" "$WORK/m_mpi/model.pth" "$WORK/m_gloo/model.pth" "$WORK/o_mpi/metrics.json" \
  "$WORK/o_gloo/metrics.json" 1e-6 || fail "--comm gloo and --comm mpi trained different models"
cmp "$WORK/o_mpi/predictions.csv" "$WORK/o_gloo/predictions.csv" || fail "different predictions"
echo "c10d: all checks passed"
