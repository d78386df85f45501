#!/usr/bin/env bash
# End-to-end failure modes of dsmil_train, as users hit them (issue 18):
#  1. a diverging run (--lr 1e30): exit 1, one line naming fold, epoch, step and slide, no model; a restart
#     from its checkpoints diverges again with the same message rather than resuming non-finite weights;
#  2. numeric labels 0-3 with --negative-label 0: trains with classes 1, 2, 3 (it died in libtorch's select());
#  3. a stray numeric label 999999999: one line naming the value and labels.csv, at once;
#  4. a second job on a checkpoint directory in use: refused within seconds, naming the directory; it runs
#     once the first job is gone (SIGKILL);
#  5. --checkpoint-dir naming a file: refused before training.
#   usage: hardening.sh BUILD_DIR
set -euo pipefail
BUILD=$1
source "$(dirname "$0")/lib.sh"
TRAIN=("$BUILD/train/dsmil_train" --threads 1 --tensorboard-dir none)

"$BUILD/bench/dsmil_make_bags" --out "$WORK/train" --bags 24 --dim 16 --seed 1 --task-seed 3 > /dev/null

# --- 1. Divergence ---------------------------------------------------------------------------------
for attempt in 1 2; do
  if "${TRAIN[@]}" --train "$WORK/train" --epochs 3 --lr 1e30 --checkpoint-every-steps 1 --model-dir "$WORK/m1" \
    --output-dir "$WORK/o1" > "$WORK/div$attempt.log" 2> "$WORK/div$attempt.err"; then
    fail "a run with --lr 1e30 exited 0 (attempt $attempt)"
  fi
  [ "$(wc -l < "$WORK/div$attempt.err")" = 1 ] || { cat "$WORK/div$attempt.err"; fail "the error is not one line"; }
  has "$WORK/div$attempt.err" "^dsmil_train: error: $WORK/train/slide_[0-9]*.h5: 'fold 0 epoch [0-9]* step [0-9]*/[0-9]*': .*the training diverged"
  [ ! -e "$WORK/m1/model.pt" ] || fail "a diverged run wrote model.pt"
done
has "$WORK/div2.log" "resuming from checkpoint"
cmp <(sed 's/^dsmil_train: error: //' "$WORK/div1.err") <(sed 's/^dsmil_train: error: //' "$WORK/div2.err") ||
  fail "the restart diverged elsewhere (it resumed other weights)"

# --- 2. Numeric labels 0-3, 0 = normal ----------------------------------------------------------------
"$BUILD/bench/dsmil_make_bags" --out "$WORK/four" --bags 32 --dim 16 --classes 4 --seed 2 --task-seed 3 > /dev/null
"${TRAIN[@]}" --train "$WORK/four" --negative-label 0 --epochs 2 --model-dir "$WORK/m2" --output-dir "$WORK/o2" \
  > "$WORK/four.log" 2>&1 || { cat "$WORK/four.log"; fail "labels 0-3 with --negative-label 0 failed"; }
has "$WORK/four.log" "3 class(es) (1, 2, 3)"
has "$WORK/o2/predictions.csv" "slide_id,set,fold,p_1,p_2,p_3,predicted,label"

# --- 3. A stray numeric label -------------------------------------------------------------------------
cp -r "$WORK/train" "$WORK/stray"
sed -i '2s/,[01]$/,999999999/' "$WORK/stray/labels.csv"
if "${TRAIN[@]}" --train "$WORK/stray" --epochs 1 --model-dir "$WORK/m3" --output-dir "$WORK/o3" 2> "$WORK/stray.err" \
  > /dev/null; then
  fail "a label of 999999999 trained"
fi
has "$WORK/stray.err" "^dsmil_train: error: $WORK/stray/labels.csv: 'label 999999999': numeric label 999999999 implies 1000000000 classes"

# --- 4. Two jobs, one checkpoint directory -----------------------------------------------------------
"${TRAIN[@]}" --train "$WORK/train" --epochs 100000 --stop-epochs 100000 --checkpoint-dir "$WORK/ckpt" \
  --model-dir "$WORK/m4" --output-dir "$WORK/o4" > "$WORK/first.log" 2>&1 &
JOB=$!
for _ in $(seq 600); do  # until it has written a checkpoint (end of epoch 1)
  if grep -q '\[ckpt\] wrote' "$WORK/first.log"; then break; fi
  sleep 0.1
done
has "$WORK/first.log" '\[ckpt\] wrote'
START=$SECONDS
if "${TRAIN[@]}" --train "$WORK/train" --epochs 2 --checkpoint-dir "$WORK/ckpt" --model-dir "$WORK/m5" \
  --output-dir "$WORK/o5" > /dev/null 2> "$WORK/second.err"; then
  fail "a second job on a checkpoint directory in use ran"
fi
[ $((SECONDS - START)) -le 10 ] || fail "the second job was refused only after $((SECONDS - START)) s"
has "$WORK/second.err" "^dsmil_train: error: $WORK/ckpt: the checkpoint directory is in use by another running job (host .* pid $JOB "
kill -9 "$JOB"
wait "$JOB" 2> /dev/null || true
JOB=""
"${TRAIN[@]}" --train "$WORK/train" --epochs 100000 --stop-epochs 100000 --checkpoint-dir "$WORK/ckpt" \
  --model-dir "$WORK/m4" --output-dir "$WORK/o4" > "$WORK/again.log" 2>&1 &
JOB=$!
for _ in $(seq 600); do
  if grep -q 'resuming from checkpoint' "$WORK/again.log"; then break; fi
  sleep 0.1
done
has "$WORK/again.log" 'resuming from checkpoint'
kill -9 "$JOB"
wait "$JOB" 2> /dev/null || true
JOB=""

# --- 5. A file where the checkpoint directory should be ----------------------------------------------
echo x > "$WORK/afile"
if "${TRAIN[@]}" --train "$WORK/train" --epochs 1 --checkpoint-dir "$WORK/afile" --model-dir "$WORK/m6" \
  --output-dir "$WORK/o6" > "$WORK/file.log" 2> "$WORK/file.err"; then
  fail "--checkpoint-dir naming a file trained"
fi
has "$WORK/file.err" "^dsmil_train: error: $WORK/afile: the checkpoint directory is a file, not a directory"
if grep -q '\[metrics\]' "$WORK/file.log"; then fail "training started before the checkpoint directory was checked"; fi
echo "hardening: all checks passed"
