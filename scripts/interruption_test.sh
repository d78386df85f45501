#!/usr/bin/env bash
# Proof that a spot interruption loses nothing. Trains one configuration uninterrupted, then trains it again
# while interrupting it the way a reclaimed instance is, restarting the same command after each stop:
#   - SIGTERM mid-epoch, a random moment after a periodic checkpoint,
#   - SIGTERM during validation,
#   - SIGTERM right after an epoch-end checkpoint,
#   - SIGTERM a random moment after start,
#   - SIGKILL a random moment mid-epoch (no chance to checkpoint: the job goes back to the last periodic one).
# Each SIGTERM must end the job with status 143 after a checkpoint; the final model files must be bitwise
# identical to the uninterrupted run's, and metrics.json and predictions.csv equal (timings aside). With
# --ranks N the job runs under mpirun and each SIGTERM goes to the last rank only: every rank must stop at
# the same step. The CPU and a fixed thread count make every run deterministic. With --precision bf16 the
# same with bfloat16 products (oneDNN's primitives, the fused rounding passes); on a CPU without bfloat16
# multiplication that run is skipped (exit 77).
#   usage: scripts/interruption_test.sh [BUILD_DIR] [--ranks N] [--seed S] [--precision fp32|bf16]
set -euo pipefail
BUILD=build
RANKS=1
SEED=${RANDOM}
PRECISION=fp32
while [ $# -gt 0 ]; do
  case $1 in
    --ranks) RANKS=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --precision) PRECISION=$2; shift 2 ;;
    *) BUILD=$1; shift ;;
  esac
done
RANDOM=$SEED
FAIL_CONTEXT="seed $SEED"
source "$(dirname "$0")/../tests/e2e/lib.sh"
LAUNCH=()
if [ "$RANKS" -gt 1 ]; then LAUNCH=(mpirun --oversubscribe --allow-run-as-root -np "$RANKS"); fi

source "$(dirname "$0")/mpi_ranks.sh"
if [ "$PRECISION" = bf16 ] && ! grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo; then
  echo "interruption test: skipped, this CPU has neither avx512_bf16 nor amx_bf16 (--precision bf16)"
  exit 77
fi

# Validation is large next to training, so a signal sent when it starts lands inside it.
"$BUILD/bench/dsmil_make_bags" --out "$WORK/train" --bags 24 --dim 256 --log-mean 8 --log-sigma 0.3 --seed 1 \
  --task-seed 3 > /dev/null
"$BUILD/bench/dsmil_make_bags" --out "$WORK/val" --bags 60 --dim 256 --log-mean 8 --log-sigma 0.3 --seed 2 \
  --task-seed 3 --prefix val_ > /dev/null
# Patch and node dropout and --standardize exercise every random stream and the restored statistics.
ARGS=(--train "$WORK/train" --validation "$WORK/val" --epochs 12 --stop-epochs 100 --lr 5e-4 --threads 1
  --dropout-patch 0.2 --passing-v true --dropout-node 0.1 --standardize true --checkpoint-every-steps 4
  --keep-checkpoints 2 --log-level debug --precision "$PRECISION")

echo "interruption test: $RANKS rank(s), $PRECISION, seed $SEED"
"${LAUNCH[@]}" "$BUILD/train/dsmil_train" "${ARGS[@]}" --model-dir "$WORK/ref/model" --output-dir "$WORK/ref/output" \
  > "$WORK/ref.log" 2>&1 || { cat "$WORK/ref.log"; fail "the uninterrupted run failed"; }

OUT=("--model-dir" "$WORK/run/model" "--output-dir" "$WORK/run/output")
CKPT="$WORK/run/output/checkpoints"
ATTEMPT=0

# Starts the job, waits for a line matching $1 in its log, waits $3 seconds, sends signal $2 (to the last
# rank under mpirun), and waits for the job to end. Sets LOG and STATUS.
interrupt() {
  local pattern=$1 signal=$2 delay=$3 target
  ATTEMPT=$((ATTEMPT + 1))
  LOG="$WORK/attempt$ATTEMPT.log"
  "${LAUNCH[@]}" "$BUILD/train/dsmil_train" "${ARGS[@]}" "${OUT[@]}" > "$LOG" 2>&1 &
  JOB=$!
  until grep -q -- "$pattern" "$LOG"; do
    kill -0 "$JOB" 2> /dev/null || { cat "$LOG"; fail "attempt $ATTEMPT ended before '$pattern'"; }
    sleep 0.01
  done
  sleep "$delay"
  target=$JOB
  if [ "$RANKS" -gt 1 ]; then
    mapfile -t pids < <(ranks_of "$JOB")
    [ "${#pids[@]}" = "$RANKS" ] || fail "expected $RANKS dsmil_train children of mpirun, found ${#pids[@]}"
    target=${pids[-1]}
  fi
  kill -s "$signal" "$target"
  local sent=$SECONDS
  STATUS=0
  wait "$JOB" || STATUS=$?
  JOB=""
  TOOK=$((SECONDS - sent))
  # SageMaker kills a container about 120 s after SIGTERM; a killed rank must not leave the others hanging.
  [ "$TOOK" -le 30 ] || fail "attempt $ATTEMPT: the job took $TOOK s to end after SIG$signal"
}

# Checks that a SIGTERMed attempt stopped cleanly, on every rank at the same checkpoint, and says where.
stopped_where() {
  if [ "$RANKS" -gt 1 ]; then
    [ "$STATUS" != 0 ] || fail "attempt $ATTEMPT: mpirun exited 0 after SIGTERM"
    [ "$(grep -c 'interrupted by SIGTERM: stopped after writing a checkpoint' "$LOG")" = "$RANKS" ] ||
      { cat "$LOG"; fail "attempt $ATTEMPT: not every rank stopped on SIGTERM"; }
  else
    [ "$STATUS" = 143 ] || { cat "$LOG"; fail "attempt $ATTEMPT: exit status $STATUS after SIGTERM, expected 143"; }
  fi
  local last
  last=$(grep '\[ckpt\] wrote' "$LOG" | tail -n 1 | sed 's/.*(\(.*\)).*/\1/')
  case $last in
    *stopping*) WHERE="mid-epoch ($last)" ;;
    "end of epoch"*) WHERE="at the end of an epoch: the signal came during validation or its checkpoint ($last)" ;;
    *) cat "$LOG"; fail "attempt $ATTEMPT: no checkpoint written on SIGTERM (last: '$last')" ;;
  esac
  echo "  attempt $ATTEMPT: SIGTERM -> stopped $WHERE, exited within ${TOOK} s"
}

# DELAY: a random number of seconds below $1 milliseconds (drawn here, so --seed replays it).
pick_delay() {
  local ms=$((RANDOM % $1))
  printf -v DELAY '0.%03d' "$ms"
}

# 1. Mid-epoch: a random moment after a periodic checkpoint.
pick_delay 150
interrupt 'step 8/' TERM "$DELAY"
stopped_where
# 2. During validation; the signal is acted on after it, with the epoch-end checkpoint. A signal that
#    arrives a little late lands in the next epoch instead: try again (at most 4 times).
for _ in 1 2 3 4; do
  interrupt '\[val\] epoch' TERM 0.02
  stopped_where
  case $WHERE in "at the end"*) break ;; esac
done
case $WHERE in "at the end"*) ;; *) fail "no SIGTERM landed during validation in 4 attempts" ;; esac
# 3. Right after an epoch-end checkpoint.
interrupt 'wrote .*(end of epoch' TERM 0
stopped_where
# 4. A random moment after start (it may land before training starts: then the first step stops it).
pick_delay 900
interrupt 'model(s) to train' TERM "$DELAY"
stopped_where
# 5. SIGKILL mid-epoch: nothing is written; the restart goes back to the last complete checkpoint.
pick_delay 200
interrupt 'step 12/' KILL "$DELAY"
[ "$STATUS" != 0 ] || fail "attempt $ATTEMPT exited 0 after SIGKILL"
echo "  attempt $ATTEMPT: SIGKILL$([ "$RANKS" -gt 1 ] && echo ' of one rank') -> status $STATUS within ${TOOK} s"
for d in "$CKPT"/.ckpt-*; do
  [ -e "$d" ] && echo "  (a partial checkpoint was left hidden: $(basename "$d"))"
done

# The last start runs to the end.
ATTEMPT=$((ATTEMPT + 1))
"${LAUNCH[@]}" "$BUILD/train/dsmil_train" "${ARGS[@]}" "${OUT[@]}" > "$WORK/final.log" 2>&1 ||
  { cat "$WORK/final.log"; fail "the final restart failed"; }
grep -q '\[ckpt\] resuming from checkpoint' "$WORK/final.log" || fail "the final restart did not resume"
if grep -q 'unusable' "$WORK/final.log"; then fail "the SIGKILL left an unusable checkpoint under a final name"; fi

# Same model to the bit, same metrics, same predictions.
cmp "$WORK/ref/model/model.pth" "$WORK/run/model/model.pth" || fail "model.pth differs from the uninterrupted run's"
cmp "$WORK/ref/model/model.pt" "$WORK/run/model/model.pt" || fail "model.pt differs from the uninterrupted run's"
cmp "$WORK/ref/model/thresholds.json" "$WORK/run/model/thresholds.json" || fail "thresholds differ"
"$BUILD/tests/dsmil_compare_runs" "$WORK/ref/model/model.pth" "$WORK/run/model/model.pth" \
  "$WORK/ref/output/metrics.json" "$WORK/run/output/metrics.json" 0 || fail "metrics differ"
cmp "$WORK/ref/output/predictions.csv" "$WORK/run/output/predictions.csv" || fail "predictions differ"
# Retention: the newest --keep-checkpoints 2, nothing partial left behind (beside the directory's lock file).
KEPT=$(find "$CKPT" -mindepth 1 -maxdepth 1 ! -name .dsmil.lock | wc -l)
[ "$KEPT" = 2 ] || { ls -la "$CKPT"; fail "expected the 2 newest checkpoints in $CKPT, found $KEPT entries"; }
echo "interruption test: $ATTEMPT starts, final model bitwise identical to the uninterrupted run's (seed $SEED)"
