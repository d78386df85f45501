#!/usr/bin/env bash
# README command 1: installs dependencies, builds, generates a small synthetic WSI-like data set, trains
# DSMIL on the CPU, evaluates it on a held-out channel, and checks the validation AUC is above 0.9.
#   WORK_DIR  where data and results go (default: out/smoke; replaced on every run)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
BUILD_DIR=${BUILD_DIR:-build}
WORK=${WORK_DIR:-out/smoke}
rm -rf "$WORK"

echo "[smoke] generating data in $WORK/data"
# Train and test channels hold the same task (--task-seed) but different slides (--seed).
"$BUILD_DIR/bench/dsmil_make_bags" --out "$WORK/data/train" --bags 120 --dim 64 --seed 1 --task-seed 7
"$BUILD_DIR/bench/dsmil_make_bags" --out "$WORK/data/test" --bags 40 --dim 64 --seed 2 --task-seed 7 --prefix test_

echo "[smoke] training"
"$BUILD_DIR/train/dsmil_train" --train "$WORK/data/train" --test "$WORK/data/test" --epochs 8 --lr 2e-3 \
  --model-dir "$WORK/model" --output-dir "$WORK/output" --threads "$(nproc)" | tee "$WORK/train.log"

echo "[smoke] evaluating the saved model on the test channel"
"$BUILD_DIR/eval/dsmil_eval" --model "$WORK/model" --test "$WORK/data/test" --out "$WORK/eval" --attention \
  --plots "$WORK/eval/plots" --threads "$(nproc)"

auc=$(sed -n 's/.*best_validation_auc=\([0-9.]*\).*/\1/p' "$WORK/train.log" | tail -n 1)
if [ -z "$auc" ] || ! awk -v a="$auc" 'BEGIN { exit !(a > 0.9) }'; then
  echo "[smoke] FAILED: validation AUC ${auc:-missing} is not above 0.9" >&2
  exit 1
fi
echo "[smoke] OK: validation AUC $auc; model in $WORK/model, metrics in $WORK/output, attention in $WORK/eval/attention, ROC and heatmap PNGs in $WORK/eval/plots"
