#!/usr/bin/env bash
# Classical MIL benchmark accuracy: MUSK1 and MUSK2 (tests/data/mil-benchmarks), the protocol of the
# authors' train_mil.py and the DSMIL paper's Table 5: 10-fold cross-validation, Adam lr 2e-4, weight decay
# 5e-3, 40 epochs (no early stop), cosine schedule to 0, features z-scored with training-fold statistics.
# Reports the mean fold accuracy (best epoch per fold by the selection score, thresholds fitted on the fold,
# as the reference does) over RUNS repetitions with different seeds, beside the paper's figure.
#   usage: bench/musk_cv.sh [RUNS]   (default 1; the paper averages 5)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-1}
BUILD_DIR=${BUILD_DIR:-build}
OUT=${OUT_DIR:-out/bench_musk}
mkdir -p "$OUT"
declare -A PAPER=([musk1]=0.932 [musk2]=0.930)
echo "| data set | runs | mean CV accuracy (ours) | mean CV AUC (ours) | DSMIL paper |"
echo "| --- | --- | --- | --- | --- |"
for set in musk1 musk2; do
  accs=()
  aucs=()
  for run in $(seq 1 "$RUNS"); do
    log="$OUT/$set.seed$run.log"
    "$BUILD_DIR/train/dsmil_train" --train "tests/data/mil-benchmarks/$set/bags" \
      --labels "tests/data/mil-benchmarks/$set/labels.csv" --folds 10 --epochs 40 --stop-epochs 40 --lr 2e-4 \
      --weight-decay 5e-3 --min-lr 0 --standardize --seed "$run" --threads "$(nproc)" --no-resume \
      --model-dir "$OUT/$set.seed$run/model" --output-dir "$OUT/$set.seed$run/output" > "$log" 2>&1
    accs+=("$(sed -n 's/.*cv_accuracy_mean=\([0-9.]*\).*/\1/p' "$log")")
    aucs+=("$(sed -n 's/.*cv_auc_mean=\([0-9.]*\).*/\1/p' "$log")")
  done
  mean() { printf '%s\n' "$@" | awk '{ s += $1 } END { printf "%.3f", s / NR }'; }
  echo "| $set | $RUNS | $(mean "${accs[@]}") | $(mean "${aucs[@]}") | ${PAPER[$set]} |"
done
