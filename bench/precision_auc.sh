#!/usr/bin/env bash
# --precision bf16 against fp32: dsmil_train run twice per seed (fp32, then bf16, otherwise the same options)
# on bench/vs_reference.sh's generated channels, with each run's wall time and final-epoch validation AUC
# (mean over classes). Prints one markdown row per set: mean seconds of each, the ratio (fp32 / bf16, from
# the summed times), mean AUC of each, the mean and the largest per-seed AUC difference (bf16 - fp32).
# Per-run figures go to OUT_DIR/precision_runs.tsv.
#   usage: bench/precision_auc.sh [SEEDS]   (default 3; the issue's AUC comparison wants 12)
#   SETS ("contiguous clam tiny"), THREADS (nproc), WSI_EPOCHS (15), TINY_EPOCHS (40), BUILD_DIR (build),
#   OUT_DIR (out/bench_vs_reference: its data/<set>/{train,val} must exist; `bench/vs_reference.sh 0`
#   generates them without training), RUNS_DIR (where the runs go; OUT_DIR/precision_runs), DSMIL_ARGS (extra
#   options for both runs, e.g. "--cache ram")
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-3}
THREADS=${THREADS:-$(nproc)}
SETS=${SETS:-contiguous clam tiny}
WSI_EPOCHS=${WSI_EPOCHS:-15}
TINY_EPOCHS=${TINY_EPOCHS:-40}
BUILD_DIR=${BUILD_DIR:-build}
OUT=${OUT_DIR:-out/bench_vs_reference}
RUNS=${RUNS_DIR:-$OUT/precision_runs}
read -r -a DSMIL_EXTRA <<< "${DSMIL_ARGS:-}"
export DSMIL_SAGEMAKER_ROOT=${DSMIL_SAGEMAKER_ROOT:-/nonexistent/dsmil-bench/opt/ml}
TSV=$RUNS/precision_runs.tsv
mkdir -p "$RUNS"
: > "$TSV"

echo "# bench/precision_auc.sh: $SEEDS seed(s), $THREADS thread(s), $(nproc) cores, $(date -u +%FT%TZ), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| set | epochs | seeds | fp32 (s) | bf16 (s) | **fp32 / bf16** | fp32 val AUC | bf16 val AUC | mean bf16 - fp32 | largest \|bf16 - fp32\| |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for set in $SETS; do
  train=$OUT/data/$set/train
  val=$OUT/data/$set/val
  for d in "$train" "$val"; do
    [ -f "$d/.done" ] || { echo "$d is missing: run 'OUT_DIR=$OUT bench/vs_reference.sh 0' first" >&2; exit 2; }
  done
  epochs=$WSI_EPOCHS
  [ "$set" = tiny ] && epochs=$TINY_EPOCHS
  for seed in $(seq 1 "$SEEDS"); do
    row="$set	$seed"
    for precision in fp32 bf16; do
      run=$RUNS/$set.seed$seed.$precision
      rm -rf "$run"
      mkdir -p "$run"
      start=$(date +%s.%N)
      "$BUILD_DIR/train/dsmil_train" --train "$train" --validation "$val" --epochs "$epochs" --stop-epochs "$epochs" \
        --lr 1e-4 --weight-decay 1e-3 --min-lr 5e-6 --seed "$seed" --threads "$THREADS" --no-resume \
        --model-dir "$run/model" --output-dir "$run/output" --checkpoint-dir "$run/checkpoints" \
        --tensorboard-dir none --precision "$precision" "${DSMIL_EXTRA[@]}" > "$run/log" 2>&1 ||
        { tail -20 "$run/log" >&2; echo "FAILED: $set seed $seed $precision" >&2; exit 1; }
      seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
      auc=$(python3 -c 'import json, sys; a = json.load(open(sys.argv[1]))["epochs"][-1]["val_auc"]; print(sum(a) / len(a))' \
        "$run/output/metrics.json")
      row="$row	$seconds	$auc"
    done
    echo "$row" >> "$TSV"
  done
  awk -F'\t' -v set="$set" -v epochs="$epochs" '$1 == set {
      n++; a += $3; b += $5; fa += $4; ba += $6; diff = $6 - $4; sd += diff; ad = diff < 0 ? -diff : diff
      if (ad > md) md = ad }
    END { printf "| %s | %d | %d | %.2f | %.2f | **%.2fx** | %.3f | %.3f | %+.3f | %.3f |\n",
          set, epochs, n, a / n, b / n, a / b, fa / n, ba / n, sd / n, md }' "$TSV"
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg); per-run figures: $TSV"
