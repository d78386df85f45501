#!/usr/bin/env bash
# End-to-end: dsmil_train in a faked SageMaker job (bring-your-own-container: no SM_* variables, only the
# /opt/ml tree with string hyperparameters), its outputs, the failure file on bad input, k-fold with a
# majority-vote test, dsmil_eval --plots (PNG figures), dsmil_eval on the authors' own .pth, and the 2020
# value network (--value-relu false): model dir and its .pth + --value-relu false score alike, and the
# default thread count for small bags.
#   usage: train_eval.sh BUILD_DIR TEST_DATA_DIR
set -euo pipefail
BUILD=$1
DATA=$2
source "$(dirname "$0")/lib.sh"  # WORK (removed at exit), fail, has

"$BUILD/bench/dsmil_make_bags" --out "$WORK/train" --bags 60 --dim 32 --seed 1 --task-seed 3
"$BUILD/bench/dsmil_make_bags" --out "$WORK/test" --bags 20 --dim 32 --seed 2 --task-seed 3 --prefix test_

# --- 1. A BYOC SageMaker job: everything from the /opt/ml tree -------------------------------------
ROOT="$WORK/opt_ml"
mkdir -p "$ROOT/input/config" "$ROOT/input/data" "$ROOT/model" "$ROOT/output/data"
ln -s "$WORK/train" "$ROOT/input/data/train"
ln -s "$WORK/test" "$ROOT/input/data/test"
cat > "$ROOT/input/config/hyperparameters.json" <<'JSON'
{"epochs": "4", "lr": "0.002", "nonlinear_q": "True", "threads": "2", "sagemaker_program": "train"}
JSON
env -u SM_CHANNEL_TRAIN DSMIL_SAGEMAKER_ROOT="$ROOT" "$BUILD/train/dsmil_train" train > "$WORK/job.log" 2>&1 ||
  { cat "$WORK/job.log"; fail "the job failed"; }
for f in model.pt model.pth thresholds.json; do [ -s "$ROOT/model/$f" ] || fail "no $f in the model dir"; done
for f in metrics.json predictions.csv config.json; do [ -s "$ROOT/output/data/$f" ] || fail "no $f in the output dir"; done
has "$ROOT/output/data/metrics.json" '"instances_per_second"'
has "$ROOT/output/data/metrics.json" '"best_epoch"'
has "$ROOT/output/data/metrics.json" '"test"'
has "$ROOT/output/data/config.json" '"lr": 0.002'
has "$ROOT/output/data/predictions.csv" 'slide_id,set,fold,p_1,predicted,label'
[ "$(grep -c ',test,' "$ROOT/output/data/predictions.csv")" = 20 ] || fail "expected 20 test predictions"
[ "$(grep -c '^\[metrics\] fold=0 epoch=' "$WORK/job.log")" = 4 ] || fail "expected 4 epoch metric lines"
grep -Eq 'val_auc=[0-9.]+ ' "$WORK/job.log" || fail "no val_auc metric"
[ ! -e "$ROOT/output/failure" ] || fail "failure file written by a successful job"

# --- 2. Bad input: one-line error, non-zero exit, the reason in the failure file ------------------
cp -r "$WORK/train" "$WORK/bad"
echo "not hdf5" > "$WORK/bad/slide_0003.h5"
if "$BUILD/train/dsmil_train" --train "$WORK/bad" --epochs 1 --model-dir "$WORK/m2" --output-dir "$WORK/o2" \
  --failure-file "$WORK/failure" 2> "$WORK/err.log"; then
  fail "training on a bad channel succeeded"
fi
has "$WORK/err.log" "dsmil_train: error: .*slide_0003.h5: not an HDF5 file"
[ "$(wc -l < "$WORK/err.log")" = 1 ] || { cat "$WORK/err.log"; fail "the error is not one line"; }
has "$WORK/failure" "slide_0003.h5: not an HDF5 file"
if "$BUILD/train/dsmil_train" --train "$WORK/train" --epochs 0 2> "$WORK/err2.log"; then fail "--epochs 0 accepted"; fi
has "$WORK/err2.log" "--epochs"

# --- 3. k-fold cross-validation, fold models voting on the test channel, dsmil_eval voting --------
"$BUILD/train/dsmil_train" --train "$WORK/train" --test "$WORK/test" --folds 3 --epochs 2 --lr 0.002 --threads 2 \
  --model-dir "$WORK/kf_model" --output-dir "$WORK/kf_out" > "$WORK/kf.log" 2>&1 || { cat "$WORK/kf.log"; fail "k-fold failed"; }
for i in 0 1 2; do [ -s "$WORK/kf_model/fold_$i/model.pt" ] || fail "no fold $i model"; done
has "$WORK/kf_out/metrics.json" '"cv_accuracy_mean"'
has "$WORK/kf_out/metrics.json" '"models_voting": 3'
"$BUILD/eval/dsmil_eval" --model "$WORK/kf_model/fold_0" --model "$WORK/kf_model/fold_1" --model "$WORK/kf_model/fold_2" \
  --test "$WORK/test" --out "$WORK/kf_eval" --attention --threads 2 > "$WORK/eval.log" 2>&1 || { cat "$WORK/eval.log"; fail "eval failed"; }
[ "$(wc -l < "$WORK/kf_eval/predictions.csv")" = 21 ] || fail "expected 20 predictions"
has "$WORK/kf_eval/metrics.json" '"accuracy"'
[ -s "$WORK/kf_eval/attention/test_0001.h5" ] || fail "no attention file"
# --plots without --attention: roc.png and one heatmap per slide; an unreadable slide file only warns.
mkdir -p "$WORK/slides"
echo "not a slide" > "$WORK/slides/test_0001.svs"
"$BUILD/eval/dsmil_eval" --model "$WORK/kf_model/fold_0" --test "$WORK/test" --out "$WORK/plot_eval" \
  --plots "$WORK/plots" --slide-dir "$WORK/slides" --threads 2 > "$WORK/plots.log" 2>&1 ||
  { cat "$WORK/plots.log"; fail "eval --plots failed"; }
is_png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$1 is not a PNG"; }
is_png "$WORK/plots/roc.png"
is_png "$WORK/plots/heatmaps/test_0001.png"
[ "$(find "$WORK/plots/heatmaps" -name '*.png' | wc -l)" = 20 ] || fail "expected 20 heatmaps"
has "$WORK/plots.log" "warn.*test_0001.svs"
[ ! -e "$WORK/plot_eval/attention" ] || fail "--plots wrote attention files"

# --- 4. dsmil_eval on the authors' GPU-saved weights (architecture from the keys, no labels) -------
mkdir -p "$WORK/ref"
cp "$DATA/reference/golden/forward_c16_aggregator.h5" "$WORK/ref/slide_a.h5"
"$BUILD/eval/dsmil_eval" --model "$DATA/reference/c16_aggregator.pth" --test "$WORK/ref" --out "$WORK/ref_eval" \
  > "$WORK/ref.log" 2>&1 || { cat "$WORK/ref.log"; fail "eval of the reference .pth failed"; }
has "$WORK/ref_eval/predictions.csv" '^slide_a,test,-1,0\.[0-9]*,[01],$'

# --- 5. The authors' 2020 value network: its .pth keys are today's, so dsmil_eval must be told -------
"$BUILD/train/dsmil_train" --train "$WORK/train" --epochs 2 --nonlinear-q false --passing-v --value-relu false \
  --threads 2 --model-dir "$WORK/v_model" --output-dir "$WORK/v_out" > "$WORK/v.log" 2>&1 ||
  { cat "$WORK/v.log"; fail "training with --value-relu false failed"; }
probs() { cut -d, -f1,4 "$1/predictions.csv"; }
for run in "v_dir:$WORK/v_model" "v_told:$WORK/v_model/model.pth --value-relu false" "v_plain:$WORK/v_model/model.pth"; do
  # shellcheck disable=SC2086  # the model path and its flags split on purpose
  "$BUILD/eval/dsmil_eval" --model ${run#*:} --test "$WORK/test" --out "$WORK/${run%%:*}" > "$WORK/v_eval.log" 2>&1 ||
    { cat "$WORK/v_eval.log"; fail "eval ${run%%:*} failed"; }
done
[ "$(probs "$WORK/v_dir")" = "$(probs "$WORK/v_told")" ] || fail "model dir and .pth + --value-relu false score differently"
[ "$(probs "$WORK/v_dir")" != "$(probs "$WORK/v_plain")" ] || fail "the .pth without --value-relu false scored as the 2020 network"
if "$BUILD/eval/dsmil_eval" --model "$WORK/v_model" --test "$WORK/test" --out "$WORK/v_bad" --value-relu true 2> "$WORK/v_err.log"; then
  fail "--value-relu true accepted for a model.pt that records false"
fi
has "$WORK/v_err.log" "records value_relu false"
if "$BUILD/eval/dsmil_eval" --model "$WORK/v_model" --test "$WORK/test" --out "$WORK/v_bad" --value-relu maybe 2> "$WORK/v_err.log"; then
  fail "--value-relu maybe accepted"
fi
has "$WORK/v_err.log" "^dsmil_eval: error: --value-relu expects true or false (got 'maybe')$"

# --- 6. --threads 0 (the default) gives small bags one thread; --threads N is obeyed ----------------
if [ "$(nproc)" -ge 2 ]; then
  "$BUILD/train/dsmil_train" --train "$WORK/train" --epochs 1 --model-dir "$WORK/t_model" --output-dir "$WORK/t_out" \
    > "$WORK/t.log" 2>&1 || { cat "$WORK/t.log"; fail "training with the default threads failed"; }
  has "$WORK/t.log" "--threads 0: 1 libtorch thread(s), not $(nproc): steps of [0-9]* instances x D = 32"
  ! grep -q -- "--threads 0:" "$WORK/job.log" || fail "--threads 2 (job 1) was overridden"
fi
echo "train_eval: all checks passed"
