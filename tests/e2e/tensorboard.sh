#!/usr/bin/env bash
# End-to-end: dsmil_train's TensorBoard event files read by TensorBoard's own reader (EventAccumulator, which
# checks every record's CRCs): the tags, one point per epoch, the values equal to metrics.json's (to float32
# rounding), fold_<k>/ prefixes with --folds, the default directory and --tensorboard-dir none.
# The Python environment (tensorboard) comes from scripts/sagemaker/python_env.sh, which creates it if needed.
#   usage: tensorboard.sh BUILD_DIR
set -euo pipefail
BUILD=$(cd "$1" && pwd)
REPO=$(cd "$(dirname "$0")/../.." && pwd)
source "$(dirname "$0")/lib.sh"  # WORK (removed at exit), fail, has

VENV=$("$REPO/scripts/sagemaker/python_env.sh")
PY=$VENV/bin/python
# No SageMaker tree: the default directory is then <output-dir>/tensorboard whatever this machine has in /opt/ml.
export DSMIL_SAGEMAKER_ROOT=$WORK/no_opt_ml
train() {
  local name=$1
  shift
  "$BUILD/train/dsmil_train" --train "$WORK/data" --threads 1 --model-dir "$WORK/$name/model" \
    --output-dir "$WORK/$name/output" "$@" > "$WORK/$name.log" 2>&1 || { cat "$WORK/$name.log"; fail "$name failed"; }
}

"$BUILD/bench/dsmil_make_bags" --out "$WORK/data" --bags 30 --dim 16 > /dev/null

# --- 1. One model, 3 epochs: every tag at steps 1, 2, 3 with metrics.json's values ----------------
train single --epochs 3 --tensorboard-dir "$WORK/tb"
# --- 2. Cross-validation: the same tags under fold_0/ and fold_1/ ----------------------------------
train folds --epochs 2 --folds 2 --tensorboard-dir "$WORK/tb_folds"
# --- 3. The default directory, and none ------------------------------------------------------------
train default --epochs 1
(cd "$WORK" && train off --epochs 1 --tensorboard-dir none)
[ ! -e "$WORK/off/output/tensorboard" ] || fail "--tensorboard-dir none wrote $WORK/off/output/tensorboard"
[ ! -e "$WORK/none" ] || fail "--tensorboard-dir none made a directory named none"

"$PY" - "$WORK" << 'EOF'
import json, os, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

work = sys.argv[1]
TAGS = {  # tag -> metrics.json key
    "train/loss": "train_loss", "val/loss": "val_loss", "val/auc": "val_auc", "val/accuracy": "val_accuracy",
    "train/lr": "lr", "train/instances_per_second": "instances_per_second",
}

def fail(msg):
    sys.exit(f"FAIL: {msg}")

def scalars(tb_dir):
    files = [f for f in os.listdir(tb_dir) if f.startswith("events.out.tfevents.")]
    if len(files) != 1:
        fail(f"{tb_dir}: expected one event file, found {files}")
    acc = EventAccumulator(tb_dir, size_guidance={"scalars": 0})  # 0: keep every point
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}

def check(tb_dir, metrics_json, folds, epochs):
    got = scalars(tb_dir)
    records = json.load(open(metrics_json))["epochs"]
    expected = {}
    for fold in folds:
        prefix = f"fold_{fold}/" if len(folds) > 1 else ""
        recs = [r for r in records if r["fold"] == fold]
        if [r["epoch"] for r in recs] != list(range(1, epochs + 1)):
            fail(f"{metrics_json}: fold {fold} has epochs {[r['epoch'] for r in recs]}")
        for tag, key in TAGS.items():
            values = [r[key] for r in recs]
            if key == "val_auc":  # per class; binary data has one
                values = [sum(v) / len(v) for v in values]
            expected[prefix + tag] = list(zip(range(1, epochs + 1), values))
    if sorted(got) != sorted(expected):
        fail(f"{tb_dir}: tags {sorted(got)}, expected {sorted(expected)}")
    for tag, points in expected.items():
        steps = [s for s, _ in got[tag]]
        if steps != [s for s, _ in points]:
            fail(f"{tb_dir}: {tag} has steps {steps}")
        for (step, value), (_, want) in zip(got[tag], points):
            # simple_value is a float32: equal to the double within its rounding (half an ulp, 2^-24 relative).
            if want is None or abs(value - want) > abs(want) * 2**-23:
                fail(f"{tb_dir}: {tag} step {step} is {value!r}, metrics.json has {want!r}")
    print(f"{tb_dir}: {len(got)} tags x {epochs} steps match {metrics_json}")

check(f"{work}/tb", f"{work}/single/output/metrics.json", [0], 3)
check(f"{work}/tb_folds", f"{work}/folds/output/metrics.json", [0, 1], 2)
check(f"{work}/default/output/tensorboard", f"{work}/default/output/metrics.json", [0], 1)
EOF
echo "tensorboard: all checks passed"
