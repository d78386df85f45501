#!/usr/bin/env bash
# SageMaker jobs through the real training toolkit (scripts/sagemaker/local_job.sh): a one-process job and
# a 2-rank MPI job end with the model in /opt/ml/model, metrics in /opt/ml/output/data and metric lines the
# README's metric_definitions match (also behind mpirun's `[1,0]<stdout>:` prefix); a job on a bad channel
# fails with its reason in /opt/ml/output/failure; a spot job reclaimed mid-training (SIGTERM to the
# container's entry point, which forwards it to the trainer under the toolkit) and restarted ends with the
# uninterrupted job's model, and so does a bring-your-own-container spot job (no toolkit: the trainer is the
# entry point, exec'd, and gets the SIGTERM itself).
#   usage: sagemaker_local.sh BUILD_DIR
set -euo pipefail
BUILD=$(realpath "$1")
cd "$(dirname "$0")/../.."
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
JOB=(scripts/sagemaker/local_job.sh --build "$BUILD")
VENV=$(scripts/sagemaker/python_env.sh)

"$BUILD/bench/dsmil_make_bags" --out "$WORK/train" --bags 40 --dim 32 --seed 1 --task-seed 3 > /dev/null
"$BUILD/bench/dsmil_make_bags" --out "$WORK/test" --bags 12 --dim 32 --seed 2 --task-seed 3 --prefix test_ > /dev/null

# --- 1. One process, with a test channel; Python-style values as users write them -----------------------
"${JOB[@]}" --train "$WORK/train" --test "$WORK/test" --hp epochs=3 --hp lr=0.002 --hp nonlinear_q=True \
  --hp 'cache="ram"' --hp threads=1 --results "$WORK/one" > "$WORK/one.log" 2>&1 ||
  { cat "$WORK/one.log"; fail "the one-process job failed"; }
grep -q -- '--nonlinear_q True' "$WORK/one.log" || fail "the toolkit did not pass --nonlinear_q True"
[ -s "$WORK/one/output/data/predictions.csv" ] || fail "no predictions in /opt/ml/output/data"

# --- 2. The toolkit's MPI distribution: 2 processes on this host, 2 folds ----------------------------------
"${JOB[@]}" --train "$WORK/train" --ranks 2 --hp epochs=2 --hp folds=2 --hp threads=1 --results "$WORK/mpi" \
  > "$WORK/mpi.log" 2>&1 || { cat "$WORK/mpi.log"; fail "the 2-rank MPI job failed"; }
grep -q '^mpirun --host .*:2 -np 2' "$WORK/mpi.log" || fail "the toolkit did not run mpirun with 2 processes"
grep -q '^\[1,0\]<stdout>:.*2 rank(s) x 1 bag(s)' "$WORK/mpi.log" || fail "rank 0 did not see 2 ranks"
grep -q '^\[1,0\]<stdout>:\[metrics\] cv_accuracy_mean=' "$WORK/mpi.log" || fail "no tagged cv metric line"
if grep -q '^\[1,1\]<stdout>:\[metrics\]' "$WORK/mpi.log"; then fail "rank 1 printed metric lines"; fi
[ -s "$WORK/mpi/model/fold_1/model.pt" ] || fail "no fold model in /opt/ml/model"

"$VENV/bin/python" tests/e2e/check_metric_regexes.py README.md "$WORK/one/job.log" "$WORK/mpi/job.log" ||
  fail "the README's metric_definitions do not match the job logs"

# The example launcher asks for the mpi distribution, spot training with checkpoints, and uses the README's
# metric definitions.
"$VENV/bin/python" scripts/sagemaker/launch.py --dry-run --image-uri dsmil:cuda --role arn:role --train s3://b/train \
  --instance-count 2 --processes-per-host 4 --spot --checkpoint-s3-uri s3://b/ckpt --hp epochs=50 --hp nonlinear_q=True \
  > "$WORK/launch.json" || fail "launch.py --dry-run failed"
"$VENV/bin/python" - "$WORK/launch.json" README.md << 'PY' || fail "launch.py's Estimator arguments are not as expected"
import json, re, sys
launch = json.load(open(sys.argv[1]))
est = launch["estimator"]
assert est["checkpoint_s3_uri"] == "s3://b/ckpt/" + launch["job_name"] + "/", est["checkpoint_s3_uri"]
assert est["distribution"] == {"mpi": {"enabled": True, "processes_per_host": 4}}, est["distribution"]
assert est["entry_point"].endswith("/scripts/sagemaker/entry.sh") and est["instance_count"] == 2
assert est["use_spot_instances"] and est["max_wait"] >= est["max_run"]
assert est["checkpoint_local_path"] == "/opt/ml/checkpoints"
assert est["hyperparameters"] == {"epochs": 50, "nonlinear_q": True}
readme = re.search(r"metric_definitions = \[(.*?)\n\]", open(sys.argv[2]).read(), re.S).group(1)
pairs = re.findall(r'\{"Name": "([^"]+)",\s*"Regex": "([^"]+)"\}', readme)
assert [(d["Name"], d["Regex"]) for d in est["metric_definitions"]] == pairs, "README and launch.py differ"
PY

# --- 3. A bad channel: non-zero, the reason in /opt/ml/output/failure ---------------------------------
cp -r "$WORK/train" "$WORK/bad"
head -c 100 "$WORK/train/slide_0002.h5" > "$WORK/bad/slide_0002.h5"
"${JOB[@]}" --train "$WORK/bad" --hp epochs=1 --expect-failure --results "$WORK/bad_job" > "$WORK/bad.log" 2>&1 ||
  { cat "$WORK/bad.log"; fail "the job on a bad channel did not fail as expected"; }
grep -q 'slide_0002.h5' "$WORK/bad_job/output/failure" || fail "the failure file does not name the bad file"

# --- 4. Managed spot: reclaimed and restarted = uninterrupted ---------------------------------------------
"$BUILD/bench/dsmil_make_bags" --out "$WORK/big" --bags 24 --dim 256 --log-mean 8 --log-sigma 0.3 --seed 4 \
  --task-seed 3 > /dev/null
"$BUILD/bench/dsmil_make_bags" --out "$WORK/big_val" --bags 30 --dim 256 --log-mean 8 --log-sigma 0.3 --seed 5 \
  --task-seed 3 --prefix val_ > /dev/null
HP=(--hp epochs=12 --hp threads=1 --hp checkpoint_every_steps=5 --hp dropout_patch=0.2 --hp standardize=True)
"${JOB[@]}" --train "$WORK/big" --validation "$WORK/big_val" "${HP[@]}" --checkpoints --results "$WORK/whole" \
  > "$WORK/whole.log" 2>&1 || { cat "$WORK/whole.log"; fail "the uninterrupted job failed"; }
"${JOB[@]}" --train "$WORK/big" --validation "$WORK/big_val" "${HP[@]}" --spot --results "$WORK/spot" \
  > "$WORK/spot.log" 2>&1 || { cat "$WORK/spot.log"; fail "the spot job failed"; }
grep '\[local_job\]\|resuming' "$WORK/spot.log"
grep -q 'stopped by itself within' "$WORK/spot.log" || fail "the toolkit spot job did not stop on SIGTERM"
cmp "$WORK/whole/model/model.pth" "$WORK/spot/model/model.pth" || fail "the spot job's model differs"
cmp "$WORK/whole/model/model.pt" "$WORK/spot/model/model.pt" || fail "the spot job's model.pt differs"
# The same as a bring-your-own-container job: the entry point execs dsmil_train, which gets the SIGTERM
# itself, checkpoints at the next step and exits 143 before the SIGKILL.
"${JOB[@]}" --train "$WORK/big" --validation "$WORK/big_val" "${HP[@]}" --spot --byoc --results "$WORK/byoc" \
  > "$WORK/byoc.log" 2>&1 || { cat "$WORK/byoc.log"; fail "the BYOC spot job failed"; }
grep -q 'interrupted by SIGTERM: stopped after writing a checkpoint' "$WORK/byoc.log" ||
  fail "the BYOC job did not checkpoint on SIGTERM"
grep -q 'reclaimed (status 143)' "$WORK/byoc.log" || fail "the BYOC job did not exit 143 on SIGTERM"
cmp "$WORK/whole/model/model.pth" "$WORK/byoc/model/model.pth" || fail "the BYOC spot job's model differs"
echo "sagemaker_local: all checks passed"
