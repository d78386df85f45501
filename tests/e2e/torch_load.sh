#!/usr/bin/env bash
# The model files in the PyTorch a user has (the torch wheel's, 2.x): model.pth loads with torch.load's default
# since PyTorch 2.6, weights_only=True, then load_state_dict(strict=True) into the authors' MILNet
# (bench/reference_train.py's re-writing of it), and that module scores every test slide as dsmil_train did
# (predictions.csv, within 1e-5); model.pt loads with weights_only=True too.
#   usage: torch_load.sh BUILD_DIR PYTHON   (PYTHON: an interpreter that imports torch and h5py)
set -euo pipefail
BUILD=$1
PY=$2
source "$(dirname "$0")/lib.sh"
REPO=$(cd "$(dirname "$0")/../.." && pwd)

"$BUILD/bench/dsmil_make_bags" --out "$WORK/train" --bags 24 --dim 32 --seed 1 --task-seed 3 > /dev/null
"$BUILD/bench/dsmil_make_bags" --out "$WORK/test" --bags 9 --dim 32 --seed 2 --task-seed 3 --prefix test_ > /dev/null
"$BUILD/train/dsmil_train" --train "$WORK/train" --test "$WORK/test" --epochs 3 --lr 0.002 --threads 1 \
  --model-dir "$WORK/model" --output-dir "$WORK/out" > "$WORK/train.log" 2>&1 ||
  { cat "$WORK/train.log"; fail "dsmil_train failed"; }

"$PY" -W ignore - "$REPO/bench" "$WORK" << 'EOF' || fail "the model files do not load in PyTorch as a user loads them"
import csv, os, sys
import torch
sys.path.insert(0, sys.argv[1])
import reference_train as ref  # the authors' MILNet, FCLayer and BClassifier

work = sys.argv[2]
state = torch.load(os.path.join(work, "model", "model.pth"), weights_only=True)
net = ref.MILNet(ref.FCLayer(32, 1), ref.BClassifier(32, 1))
net.load_state_dict(state, strict=True)
net.eval()
saved = torch.load(os.path.join(work, "model", "model.pt"), weights_only=True)
assert saved["format"] == "dsmil-model", saved.keys()
for key, value in saved["state_dict"].items():
    assert torch.equal(value, state[key]), key

worst, rows = 0.0, 0
with open(os.path.join(work, "out", "predictions.csv")) as f:
    for row in csv.DictReader(f):
        if row["set"] != "test":
            continue
        x = ref.h5_bag(os.path.join(work, "test", row["slide_id"] + ".h5"), 0.0, 1)[:, :32]
        with torch.no_grad():
            _, bag_logits, _, _ = net(x)
        worst = max(worst, abs(torch.sigmoid(bag_logits).item() - float(row["p_1"])))
        rows += 1
print(f"torch {torch.__version__}: model.pth and model.pt load with weights_only=True; "
      f"{rows} test slides scored by the authors' MILNet within {worst:.1e} of predictions.csv")
assert rows == 9, rows
assert worst < 1e-5, worst
EOF
echo "torch_load: all checks passed"
