#!/usr/bin/env bash
# bench/gpu_bench.sh, the script a GPU machine runs once, checked where there is no GPU: --dry-run lists
# what is missing, prints every step (the CUDA build, the GPU checks over NCCL, the channel, dsmil_train and
# the reference on the same GPU, the 2-GPU run) and creates nothing; --check fails naming what is missing.
#   usage: gpu_bench_dry_run.sh REPO
set -euo pipefail
REPO=$1
source "$(dirname "$0")/lib.sh"  # WORK (removed at exit), fail, has

BUILD_DIR=$WORK/b "$REPO/bench/gpu_bench.sh" --dry-run > "$WORK/dry.log" 2>&1 || { cat "$WORK/dry.log"; fail "--dry-run failed"; }
has "$WORK/dry.log" "would run: env BUILD_DIR=$WORK/b .*DSMIL_SKIP_DEPS=1 .*scripts/build_cuda.sh"
has "$WORK/dry.log" "would run: $WORK/b/tests/dsmil_tests --gtest_filter=SumFlatGradients"
has "$WORK/dry.log" "would run: mpirun -np 2 .*dsmil_mpi_tests --comm nccl"
has "$WORK/dry.log" "would run: $WORK/b/train/dsmil_train .* --device cuda --cache gpu --cache-budget 1"
has "$WORK/dry.log" "would run: $WORK/b/tests/dsmil_compare_runs .*/cpu_m/model.pth .*/gpu_m/model.pth"
has "$WORK/dry.log" "would run: $WORK/b/train/dsmil_train .* --bags-per-step 4 --device cuda"
has "$WORK/dry.log" "would run: taskset -c 0\\\\,1 $WORK/b/bench/dsmil_bench_step --threads 2 --rounds 5 --bf16-only"
has "$WORK/dry.log" "would run: $WORK/b/bench/dsmil_make_bags --out $WORK/b/gpu-bench/train --bags 160 --dim 1024"
has "$WORK/dry.log" "would run: env CUDA_VISIBLE_DEVICES=0 $WORK/b/train/dsmil_train .* --device cuda"
has "$WORK/dry.log" "would run: env CUDA_VISIBLE_DEVICES=0 PYTHONUNBUFFERED=1 .*bench/reference_train.py .* --device cuda"
has "$WORK/dry.log" "would run: env CUDA_VISIBLE_DEVICES=0\\\\,1 mpirun -np 2 .* --comm nccl"
has "$WORK/dry.log" "dry run: nothing was run"
[ ! -e "$WORK/b" ] || fail "--dry-run created $WORK/b"

# Here (no GPU, no nvidia-smi): --check names what is missing and fails.
if PYTHON=/nonexistent/python3 "$REPO/bench/gpu_bench.sh" --check > "$WORK/check.log" 2>&1; then
  fail "--check passed on a machine without nvidia-smi"
fi
has "$WORK/check.log" "missing for the dsmil build"
has "$WORK/check.log" "a CUDA torch in /nonexistent/python3"
echo "gpu_bench --dry-run and --check: all checks passed"
