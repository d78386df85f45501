#!/usr/bin/env bash
# End-to-end over MPI ranks: `mpirun -np 2 dsmil_train` trains the same model as one process with
# --accumulate 2, bit for bit (same bags per step, same dropout draws, each bag's gradient computed alone and
# added as the all-reduce adds the ranks': the same model.pth and predictions.csv bytes, the same metrics), and
# with --bags-per-step 2 the model of one process with --accumulate 2 --bags-per-step 2, bit for bit, and of
# --accumulate 4 within 1e-5; only rank 0 prints metrics and info logs; an error names its rank and ends the
# job; a rank killed mid-training ends the job instead of leaving the other waiting in a collective.
#   usage: mpi.sh BUILD_DIR MPIRUN
set -euo pipefail
BUILD=$1
MPIRUN=("$2" --oversubscribe --allow-run-as-root -np 2)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/../../scripts/mpi_ranks.sh"

"$BUILD/bench/dsmil_make_bags" --out "$WORK/train" --bags 61 --dim 32 --seed 1 --task-seed 3 > /dev/null
"$BUILD/bench/dsmil_make_bags" --out "$WORK/test" --bags 21 --dim 32 --seed 2 --task-seed 3 --prefix test_ > /dev/null

# Fails unless runs $1 and $2 wrote the same model and predictions, byte for byte, and the same metrics
# (dsmil_compare_runs at tolerance 0 says where they differ); $3 names the two runs.
same_bits() {
  "$BUILD/tests/dsmil_compare_runs" "$WORK/m$1/model.pth" "$WORK/m$2/model.pth" "$WORK/o$1/metrics.json" \
    "$WORK/o$2/metrics.json" 0 "$WORK/o$1/predictions.csv" "$WORK/o$2/predictions.csv" ||
    fail "$3 trained different models"
  cmp "$WORK/m$1/model.pth" "$WORK/m$2/model.pth" || fail "$3: model.pth differs"
  cmp "$WORK/o$1/predictions.csv" "$WORK/o$2/predictions.csv" || fail "$3: predictions.csv differs"
}

# --- 1. Two ranks = one process accumulating two bags, bit for bit ---------------------------------
# 61 slides: odd training and validation sets, so the last step is padded and validation shards are
# uneven. Patch and node dropout and --standardize exercise the per-slot random streams and broadcasts.
ARGS=(--train "$WORK/train" --test "$WORK/test" --epochs 4 --lr 0.002 --threads 1 --dropout-patch 0.2
  --passing-v true --dropout-node 0.1 --standardize true)
"$BUILD/train/dsmil_train" "${ARGS[@]}" --accumulate 2 --model-dir "$WORK/m1" --output-dir "$WORK/o1" \
  > "$WORK/one.log" 2>&1 || { cat "$WORK/one.log"; fail "the single process failed"; }
"${MPIRUN[@]}" "$BUILD/train/dsmil_train" "${ARGS[@]}" --model-dir "$WORK/m2" --output-dir "$WORK/o2" \
  > "$WORK/two.log" 2>&1 || { cat "$WORK/two.log"; fail "mpirun -np 2 dsmil_train failed"; }
same_bits 1 2 "2 ranks and --accumulate 2"
has "$WORK/one.log" '1 rank(s) x 2 bag(s) = 2 bag(s) per optimiser step'
has "$WORK/two.log" 'r0/2\] .*2 rank(s) x 1 bag(s) = 2 bag(s) per optimiser step'
[ "$(grep -c '^\[metrics\] fold=0 epoch=' "$WORK/two.log")" = 4 ] || fail "expected 4 epoch metric lines (rank 0's)"
if grep -q 'r1/2\] \[.*info' "$WORK/two.log"; then fail "rank 1 logged at info level"; fi
# Ranks compose with packed steps: 2 ranks x --bags-per-step 2 train the model of one process with two packs
# of 2 per step, bit for bit, and of --accumulate 4 within 1e-5 (a pack's gradient is one GEMM over its bags).
"$BUILD/train/dsmil_train" "${ARGS[@]}" --accumulate 4 --model-dir "$WORK/m6" --output-dir "$WORK/o6" \
  > "$WORK/acc4.log" 2>&1 || { cat "$WORK/acc4.log"; fail "the --accumulate 4 run failed"; }
"${MPIRUN[@]}" "$BUILD/train/dsmil_train" "${ARGS[@]}" --bags-per-step 2 --model-dir "$WORK/m7" --output-dir "$WORK/o7" \
  > "$WORK/packed.log" 2>&1 || { cat "$WORK/packed.log"; fail "mpirun -np 2 dsmil_train --bags-per-step 2 failed"; }
"$BUILD/train/dsmil_train" "${ARGS[@]}" --accumulate 2 --bags-per-step 2 --model-dir "$WORK/m8" \
  --output-dir "$WORK/o8" > "$WORK/packs.log" 2>&1 || { cat "$WORK/packs.log"; fail "the two-pack run failed"; }
same_bits 8 7 "2 ranks x --bags-per-step 2 and --accumulate 2 --bags-per-step 2"
"$BUILD/tests/dsmil_compare_runs" "$WORK/m6/model.pth" "$WORK/m7/model.pth" "$WORK/o6/metrics.json" \
  "$WORK/o7/metrics.json" 1e-5 || fail "2 ranks x --bags-per-step 2 and --accumulate 4 trained different models"
has "$WORK/packed.log" 'r0/2\] .*2 rank(s) x 2 bag(s) = 4 bag(s) per optimiser step, packed 2 to a forward/backward'
# The comparison sees a different run: one bag per step.
"$BUILD/train/dsmil_train" "${ARGS[@]}" --model-dir "$WORK/m3" --output-dir "$WORK/o3" > "$WORK/three.log" 2>&1 ||
  { cat "$WORK/three.log"; fail "the --accumulate 1 run failed"; }
if "$BUILD/tests/dsmil_compare_runs" "$WORK/m1/model.pth" "$WORK/m3/model.pth" "$WORK/o1/metrics.json" \
  "$WORK/o3/metrics.json" 1e-5 > /dev/null 2>&1; then
  fail "dsmil_compare_runs found no difference between --accumulate 2 and 1"
fi

# --- 2. An error on the ranks: one line naming the rank, the job ends non-zero --------------------
cp -r "$WORK/train" "$WORK/bad"
echo "not hdf5" > "$WORK/bad/slide_0003.h5"
if "${MPIRUN[@]}" "$BUILD/train/dsmil_train" --train "$WORK/bad" --epochs 1 --threads 1 --model-dir "$WORK/m4" \
  --output-dir "$WORK/o4" > "$WORK/bad.log" 2>&1; then
  fail "mpirun -np 2 on a bad channel exited 0"
fi
has "$WORK/bad.log" '^dsmil_train: error: rank [01]: .*slide_0003.h5: not an HDF5 file'

# --- 3. A rank killed mid-training: mpirun ends the job, non-zero, within 60 s -------------------
"${MPIRUN[@]}" "$BUILD/train/dsmil_train" --train "$WORK/train" --epochs 100000 --stop-epochs 100000 --threads 1 \
  --model-dir "$WORK/m5" --output-dir "$WORK/o5" > "$WORK/kill.log" 2>&1 &
JOB=$!
for _ in $(seq 600); do  # until both ranks are in the training loop (the first epoch's metric line)
  if grep -q '^\[metrics\] fold=0 epoch=1 ' "$WORK/kill.log"; then break; fi
  sleep 0.1
done
has "$WORK/kill.log" '^\[metrics\] fold=0 epoch=1 '
mapfile -t RANKS < <(ranks_of "$JOB")
[ "${#RANKS[@]}" = 2 ] || fail "expected 2 dsmil_train children of mpirun, found ${#RANKS[@]}"
kill -9 "${RANKS[1]}"
KILLED_AT=$SECONDS
while kill -0 "$JOB" 2> /dev/null; do
  [ $((SECONDS - KILLED_AT)) -lt 60 ] || fail "mpirun still running 60 s after a rank was killed"
  sleep 0.2
done
if wait "$JOB"; then fail "mpirun exited 0 after a rank was killed"; fi
JOB=""
echo "mpi: all checks passed (the job ended $((SECONDS - KILLED_AT)) s after the kill)"
