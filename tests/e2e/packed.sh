#!/usr/bin/env bash
# End-to-end packed steps (--bags-per-step K): the same bags in the same steps, with the same dropout draws,
# as --accumulate K, so the same model within 1e-5 (weights, losses, validation metrics); --accumulate 2
# --bags-per-step 2 as --accumulate 4; a resume with another packing is refused, naming the option.
#   usage: packed.sh BUILD_DIR
set -euo pipefail
BUILD=$1
source "$(dirname "$0")/lib.sh"  # WORK (removed at exit), fail, has
export DSMIL_SAGEMAKER_ROOT=/nonexistent/dsmil-test/opt/ml

# 61 bags of 2-13 instances: the last step wraps around, packs hold bags of one instance or two.
"$BUILD/bench/dsmil_make_bags" --out "$WORK/train" --bags 61 --dim 24 --seed 1 --task-seed 3 --min-instances 1 \
  --max-instances 13 --log-mean 1.5 --log-sigma 0.8 > /dev/null
"$BUILD/bench/dsmil_make_bags" --out "$WORK/test" --bags 21 --dim 24 --seed 2 --task-seed 3 --prefix test_ > /dev/null
ARGS=(--train "$WORK/train" --test "$WORK/test" --epochs 4 --lr 0.002 --threads 1 --tensorboard-dir none
  --dropout-patch 0.2 --passing-v true --dropout-node 0.1 --standardize true)
train() {  # name, options...
  local name=$1
  shift
  "$BUILD/train/dsmil_train" "${ARGS[@]}" --model-dir "$WORK/m_$name" --output-dir "$WORK/o_$name" \
    --checkpoint-dir "$WORK/c_$name" "$@" > "$WORK/$name.log" 2>&1 || { cat "$WORK/$name.log"; fail "$name failed"; }
}
same() {  # a, b
  "$BUILD/tests/dsmil_compare_runs" "$WORK/m_$1/model.pth" "$WORK/m_$2/model.pth" "$WORK/o_$1/metrics.json" \
    "$WORK/o_$2/metrics.json" 1e-5 || fail "$1 and $2 trained different models"
}

train acc4 --accumulate 4
train pack4 --bags-per-step 4
train acc2pack2 --accumulate 2 --bags-per-step 2
same acc4 pack4
same acc4 acc2pack2
has "$WORK/pack4.log" '1 rank(s) x 4 bag(s) = 4 bag(s) per optimiser step, packed 4 to a forward/backward'
has "$WORK/acc2pack2.log" '1 rank(s) x 4 bag(s) = 4 bag(s) per optimiser step, packed 2 to a forward/backward'
# The comparison sees a different run: another number of bags per step.
train pack2 --bags-per-step 2
if "$BUILD/tests/dsmil_compare_runs" "$WORK/m_acc4/model.pth" "$WORK/m_pack2/model.pth" \
  "$WORK/o_acc4/metrics.json" "$WORK/o_pack2/metrics.json" 1e-5 > /dev/null 2>&1; then
  fail "dsmil_compare_runs found no difference between --bags-per-step 4 and 2"
fi

# A checkpoint of --bags-per-step 4 is not resumed by --accumulate 4: the job names the setting.
if "$BUILD/train/dsmil_train" "${ARGS[@]}" --epochs 5 --accumulate 4 --model-dir "$WORK/m_r" --output-dir "$WORK/o_r" \
  --checkpoint-dir "$WORK/c_pack4" > "$WORK/resume.log" 2>&1; then
  fail "a --bags-per-step 4 checkpoint was resumed with --accumulate 4"
fi
has "$WORK/resume.log" 'bags-per-step: 4 in the checkpoint, now 1'
echo "packed: all checks passed"
