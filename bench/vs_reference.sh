#!/usr/bin/env bash
# dsmil_train against the authors' training loop (bench/reference_train.py, a re-written train_tcga.py), side
# by side on the same generated channels, the same threads, epochs and hyperparameters, each seed run by
# both in turn. Whole processes are timed (start-up, data, training, validation, saving), with their peak
# resident memory (GNU time's maximum RSS), and the final epoch's validation AUC of each is averaged over
# the seeds. Sets (SETS):
#   contiguous  WSI-like: 120 training + 40 validation slides, ~1000 instances (lognormal), D = 512, float32,
#               one contiguous dataset per file; WSI_EPOCHS (15) epochs
#   clam        the same slides (same values) in CLAM's extractor layout: features chunked (1, D), unlimited
#               first dimension, appended in batches of 256
#   tiny        classical MIL: 200 training + 60 validation bags of 2-13 instances, D = 200; TINY_EPOCHS (40)
# Prints one markdown table row per set and variant: mean wall seconds, the ratio (reference / dsmil, from the summed
# times), mean final validation AUC, peak RSS; per-run figures go to OUT_DIR/runs.tsv.
#   usage: bench/vs_reference.sh [SEEDS]   (default 3; the AUC comparison wants 12; 0 = only generate the channels)
#   THREADS (nproc), SETS ("contiguous clam tiny"), WSI_EPOCHS (15), TINY_EPOCHS (40), BUILD_DIR (build),
#   OUT_DIR (out/bench_vs_reference), DSMIL_ARGS (extra dsmil_train options, e.g. "--cache ram"), VARIANTS
#   (";"-separated dsmil_train option sets run against the same reference runs, one table row each),
#   REFERENCE_ARGS (extra reference_train.py options, e.g. "--load h5"), TORCH_VENV (see bench/python_env.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-3}
THREADS=${THREADS:-$(nproc)}
SETS=${SETS:-contiguous clam tiny}
WSI_EPOCHS=${WSI_EPOCHS:-15}
TINY_EPOCHS=${TINY_EPOCHS:-40}
BUILD_DIR=${BUILD_DIR:-build}
OUT=${OUT_DIR:-out/bench_vs_reference}
read -r -a DSMIL_EXTRA <<< "${DSMIL_ARGS:-}"
read -r -a REFERENCE_EXTRA <<< "${REFERENCE_ARGS:-}"
# Several dsmil_train variants may share each reference run (one row each): VARIANTS="A;B" with A, B option
# strings ("" = the defaults), e.g. VARIANTS=";--precision bf16;--bags-per-step 8".
IFS=';' read -r -a VARIANTS <<< "${VARIANTS:-}"
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=("")
[ -x /usr/bin/time ] || { echo "GNU time (/usr/bin/time) is needed for the peak memory figures" >&2; exit 2; }
VENV=
[ "$SEEDS" = 0 ] || VENV=$(bench/python_env.sh)  # 0 seeds: only generate the channels (bench/precision_auc.sh)
MAKE_BAGS=$BUILD_DIR/bench/dsmil_make_bags
# Never pick up a SageMaker tree (another job's /opt/ml/input/config/hyperparameters.json would change the run).
export DSMIL_SAGEMAKER_ROOT=${DSMIL_SAGEMAKER_ROOT:-/nonexistent/dsmil-bench/opt/ml}
mkdir -p "$OUT"

# Channels are generated once (deterministic) and reused; a `.done` marker says a channel is complete.
make_channel() {  # dir, then dsmil_make_bags options
  local dir=$1
  shift
  if [ ! -f "$dir/.done" ]; then
    rm -rf "$dir"
    "$MAKE_BAGS" --out "$dir" "$@" > /dev/null
    touch "$dir/.done"
  fi
}
WSI=(--dim 512 --log-mean 6.9 --log-sigma 0.3 --task-seed 7)
TINY=(--dim 200 --log-mean 1.8 --log-sigma 0.6 --min-instances 2 --max-instances 13 --task-seed 7)
prepare_set() {  # set -> the globals train, val, epochs
  train=$OUT/data/$1/train
  val=$OUT/data/$1/val
  case $1 in
    contiguous | clam)
      make_channel "$train" "${WSI[@]}" --bags 120 --seed 1 --layout "$1"
      make_channel "$val" "${WSI[@]}" --bags 40 --seed 2 --prefix val_ --layout "$1"
      epochs=$WSI_EPOCHS ;;
    tiny)
      make_channel "$train" "${TINY[@]}" --bags 200 --seed 1
      make_channel "$val" "${TINY[@]}" --bags 60 --seed 2 --prefix val_
      epochs=$TINY_EPOCHS ;;
    *) echo "unknown set '$1' (contiguous, clam, tiny)" >&2; exit 2 ;;
  esac
}

timed() {  # log, command...: runs it under GNU time, which writes "wall_s max_rss_kb" to log.time
  local log=$1
  shift
  /usr/bin/time -f "%e %M" -o "$log.time" "$@" > "$log" 2>&1 || { tail -20 "$log" >&2; echo "FAILED: $*" >&2; exit 1; }
}

echo "# bench/vs_reference.sh: $SEEDS seed(s), $THREADS thread(s), $(nproc) cores, $(date -u +%FT%TZ), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| set | dsmil_train options | epochs | seeds | dsmil_train (s) | reference (s) | **ratio** | dsmil val AUC | reference val AUC | dsmil peak RSS (MB) | reference peak RSS (MB) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
printf 'set\tvariant\tseed\tdsmil_s\treference_s\tdsmil_auc\treference_auc\tdsmil_rss_mb\treference_rss_mb\n' > "$OUT/runs.tsv"
for set in $SETS; do
  prepare_set "$set"
  [ "$SEEDS" = 0 ] && continue
  for seed in $(seq 1 "$SEEDS"); do
    run=$OUT/runs/$set.seed$seed
    rm -rf "$run"
    mkdir -p "$run"
    timed "$run/reference.log" "$VENV/bin/python" bench/reference_train.py --train "$train" --validation "$val" \
      --epochs "$epochs" --stop-epochs "$epochs" --lr 1e-4 --weight-decay 1e-3 --min-lr 5e-6 --seed "$seed" \
      --threads "$THREADS" --work-dir "$run/reference" "${REFERENCE_EXTRA[@]}"
    reference_auc=$(sed -n 's/.*final_val_auc=\([0-9.]*\).*/\1/p' "$run/reference.log")
    read -r reference_s reference_kb < "$run/reference.log.time"
    for v in "${!VARIANTS[@]}"; do
      read -r -a variant_args <<< "${VARIANTS[$v]}"
      out=$run/dsmil$v
      timed "$out.log" "$BUILD_DIR/train/dsmil_train" --train "$train" --validation "$val" --epochs "$epochs" \
        --stop-epochs "$epochs" --lr 1e-4 --weight-decay 1e-3 --min-lr 5e-6 --seed "$seed" --threads "$THREADS" \
        --no-resume --model-dir "$out/model" --output-dir "$out/output" --checkpoint-dir "$out/checkpoints" \
        --tensorboard-dir none "${DSMIL_EXTRA[@]}" "${variant_args[@]}"
      dsmil_auc=$("$VENV/bin/python" -c 'import json, sys; a = json.load(open(sys.argv[1]))["epochs"][-1]["val_auc"]; print(sum(a) / len(a))' \
        "$out/output/metrics.json")
      read -r dsmil_s dsmil_kb < "$out.log.time"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n' "$set" "$v" "$seed" "$dsmil_s" "$reference_s" "$dsmil_auc" \
        "$reference_auc" $((dsmil_kb / 1024)) $((reference_kb / 1024)) >> "$OUT/runs.tsv"
    done
  done
  for v in "${!VARIANTS[@]}"; do
    opts=$(echo "${DSMIL_ARGS:-} ${VARIANTS[$v]}" | xargs)
    awk -F'\t' -v set="$set" -v v="$v" -v opts="${opts:-(defaults)}" -v epochs="$epochs" '
      $1 == set && $2 == v { n++; d += $4; r += $5; da += $6; ra += $7; if ($8 > dm) dm = $8; if ($9 > rm) rm = $9 }
      END { printf "| %s | %s | %d | %d | %.2f | %.2f | **%.2fx** | %.3f | %.3f | %d | %d |\n",
            set, opts, epochs, n, d / n, r / n, r / d, da / n, ra / n, dm, rm }' "$OUT/runs.tsv"
  done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg); per-run figures: $OUT/runs.tsv"
