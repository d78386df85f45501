#!/usr/bin/env bash
# Resuming with another layout of the same bags per step (a spot job restarted on fewer GPUs): a 2-rank job
# interrupted by SIGTERM resumes as one process with --accumulate 2, is interrupted again, and resumes as 2
# ranks to the end; the final model and predictions are the uninterrupted 2-rank job's, byte for byte, and so
# are its metrics (2 ranks train the model of --accumulate 2 to the bit, tests/e2e/mpi.sh). A restart with
# other bags per step (1 process, --accumulate 1) is refused, naming both layouts, and leaves the checkpoints
# usable. Checkpoints written by 2 ranks hold the slide digests of both ranks' reads.
#   usage: resume_layout.sh BUILD_DIR MPIRUN
set -euo pipefail
BUILD=$1
MPIRUN=("$2" --oversubscribe --allow-run-as-root -np 2)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/../../scripts/mpi_ranks.sh"

# Bags of a few hundred instances, so a step takes long enough for a signal to land mid-epoch.
"$BUILD/bench/dsmil_make_bags" --out "$WORK/train" --bags 40 --dim 64 --log-mean 6 --log-sigma 0.3 --seed 1 \
  --task-seed 3 > /dev/null
"$BUILD/bench/dsmil_make_bags" --out "$WORK/val" --bags 11 --dim 64 --seed 2 --task-seed 3 --prefix val_ > /dev/null
ARGS=(--train "$WORK/train" --validation "$WORK/val" --epochs 6 --stop-epochs 100 --lr 0.002 --threads 1
  --dropout-patch 0.2 --passing-v true --dropout-node 0.1 --standardize true --checkpoint-every-steps 3)
OUT=(--model-dir "$WORK/run/model" --output-dir "$WORK/run/output")

"${MPIRUN[@]}" "$BUILD/train/dsmil_train" "${ARGS[@]}" --model-dir "$WORK/ref/model" \
  --output-dir "$WORK/ref/output" > "$WORK/ref.log" 2>&1 || { cat "$WORK/ref.log"; fail "the reference failed"; }

# Starts `$@` (dsmil_train or mpirun), waits for a checkpoint line matching $PATTERN, sends SIGTERM (to the
# last rank under mpirun) and waits for the job to end; LOG is its log. Fails unless it stopped with a
# checkpoint before finishing.
interrupt() {
  LOG=$WORK/attempt$((++ATTEMPT)).log
  "$@" > "$LOG" 2>&1 &
  JOB=$!
  until grep -q -- "$PATTERN" "$LOG"; do
    kill -0 "$JOB" 2> /dev/null || { cat "$LOG"; fail "attempt $ATTEMPT ended before '$PATTERN'"; }
    sleep 0.01
  done
  local target=$JOB
  if [ "$1" = "${MPIRUN[0]}" ]; then
    mapfile -t pids < <(ranks_of "$JOB")
    [ "${#pids[@]}" = 2 ] || fail "expected 2 dsmil_train children of mpirun, found ${#pids[@]}"
    target=${pids[-1]}
  fi
  kill -TERM "$target"
  local status=0
  wait "$JOB" || status=$?
  JOB=""
  [ "$status" != 0 ] || { cat "$LOG"; fail "attempt $ATTEMPT finished before the SIGTERM landed"; }
  has "$LOG" 'interrupted by SIGTERM: stopped after writing a checkpoint'
  echo "  attempt $ATTEMPT stopped at: $(grep '\[ckpt\] wrote' "$LOG" | tail -n 1 | sed 's/.*(\(.*\)).*/\1/')"
}
ATTEMPT=0

# 1. Two ranks, stopped in epoch 2.
PATTERN='wrote .*(epoch 2 step 3/'
interrupt "${MPIRUN[@]}" "$BUILD/train/dsmil_train" "${ARGS[@]}" "${OUT[@]}"
# Each rank scored part of the validation set: the checkpoint has every slide's digest, both ranks' reads.
CKPT=$(find "$WORK/run/output/checkpoints" -maxdepth 1 -name 'ckpt-*' | sort | tail -n 1)
VAL=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["slide_digests"]["validation"]))' \
  "$CKPT/state.json")
[ "$VAL" = 11 ] || fail "$CKPT has the digests of $VAL validation slides, expected all 11 (both ranks' reads)"
# 2. One process with --accumulate 2: the same 2 bags per step; stopped in epoch 4.
PATTERN='wrote .*(epoch 4 step 3/'
interrupt "$BUILD/train/dsmil_train" "${ARGS[@]}" "${OUT[@]}" --accumulate 2
has "$LOG" 'resuming a checkpoint of 2 rank(s) x --accumulate 1 = 2 bag(s) per step as 1 rank(s) x --accumulate 2 = 2 bag(s) per step'
has "$LOG" '\[ckpt\] resuming at epoch [0-9]/6, step '
# 3. One bag per step: refused before training, naming both layouts.
if "$BUILD/train/dsmil_train" "${ARGS[@]}" "${OUT[@]}" > "$WORK/refused.log" 2>&1; then
  fail "a checkpoint of 2 bags per step resumed with 1"
fi
has "$WORK/refused.log" "^dsmil_train: error: $WORK/run/output/checkpoints/ckpt-[0-9]*: .*layout (ranks x --accumulate = bags per step): 1 rank(s) x --accumulate 2 = 2 bag(s) per step in the checkpoint, now 1 rank(s) x --accumulate 1 = 1 bag(s) per step.*(with 1 rank(s): --accumulate 2)"
# 4. Two ranks again, to the end.
"${MPIRUN[@]}" "$BUILD/train/dsmil_train" "${ARGS[@]}" "${OUT[@]}" > "$WORK/final.log" 2>&1 ||
  { cat "$WORK/final.log"; fail "the final restart failed"; }
has "$WORK/final.log" 'resuming a checkpoint of 1 rank(s) x --accumulate 2 = 2 bag(s) per step as 2 rank(s) x --accumulate 1'

"$BUILD/tests/dsmil_compare_runs" "$WORK/ref/model/model.pth" "$WORK/run/model/model.pth" \
  "$WORK/ref/output/metrics.json" "$WORK/run/output/metrics.json" 0 \
  "$WORK/ref/output/predictions.csv" "$WORK/run/output/predictions.csv" ||
  fail "the job resumed across layouts trained another model than the uninterrupted one"
cmp "$WORK/ref/model/model.pth" "$WORK/run/model/model.pth" || fail "model.pth differs from the uninterrupted run's"
cmp "$WORK/ref/output/predictions.csv" "$WORK/run/output/predictions.csv" ||
  fail "predictions.csv differs from the uninterrupted run's"
echo "resume_layout: 2 ranks -> 1 x --accumulate 2 -> 2 ranks ends with the uninterrupted run's model, bit for bit"
