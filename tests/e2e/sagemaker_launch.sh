#!/usr/bin/env bash
# The path users take, from the launcher to the ranks: scripts/sagemaker/launch.py run with the SDK pinned in
# scripts/sagemaker/requirements.txt, AWS answered inside botocore (tests/e2e/aws_local/sitecustomize.py: no
# network, no credentials), and its requests checked (check_launch_requests.py): CreateTrainingJob for an
# MPI spot job (sagemaker_mpi_* keys, MaxWait, a checkpoint prefix of its own, the metric definitions, the
# uploaded source archive), every launcher option, CreateHyperParameterTuningJob for --tune, --folds, and
# eval_launch.py's CreateProcessingJob (materialised and run: predictions, attention, plots; an archive of fold
# directories scores with every fold's model; a broken model archive, or one without a model, fails with its
# reason in /opt/ml/output/message). Then the
# requests themselves run as jobs (scripts/sagemaker/local_job.sh --request: /opt/ml materialised from the
# request, the uploaded archive unpacked by the real training toolkit, `entry.sh train` as the container's
# PID 1): the 4 ranks asked for start and train; and a 2-rank spot job sent SIGTERM (to PID 1 only) stops on
# every rank with a checkpoint, by itself, and resumes to the uninterrupted job's model, bit for bit.
#   usage: sagemaker_launch.sh BUILD_DIR
set -euo pipefail
BUILD=$(realpath "$1")
cd "$(dirname "$0")/../.."
REPO=$PWD
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
VENV=$(scripts/sagemaker/python_env.sh)
JOB=(scripts/sagemaker/local_job.sh --build "$BUILD")
CHECK=("$VENV/bin/python" tests/e2e/check_launch_requests.py)

# launch.py as a user runs it, in an environment with no AWS configuration or credentials; what it asked AWS
# for lands in $WORK/$1.
launch() {
  local capture=$WORK/$1
  shift
  env -i PATH="$PATH" HOME="$WORK/home" LANG=C.UTF-8 PYTHONPATH="$REPO/tests/e2e/aws_local" \
    DSMIL_AWS_CAPTURE="$capture" AWS_DEFAULT_REGION=eu-west-1 AWS_EC2_METADATA_DISABLED=true \
    AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null SAGEMAKER_SUPPRESS_V2_WARNING=1 \
    SAGEMAKER_USER_CONFIG_OVERRIDE="$REPO/tests/e2e/aws_local/sagemaker-config.yaml" \
    "$VENV/bin/python" scripts/sagemaker/launch.py --image-uri 123456789012.dkr.ecr.eu-west-1.amazonaws.com/dsmil:cpu \
    --role arn:aws:iam::123456789012:role/SageMakerRole "$@" > "$capture.log" 2>&1 ||
    { cat "$capture.log"; fail "launch.py $* failed"; }
}

# --- 1. The requests ------------------------------------------------------------------------------------
MPI=(--train s3://bucket/dsmil/train --validation s3://bucket/dsmil/val --instance-count 2 --processes-per-host 4
  --spot --max-run 3600 --checkpoint-s3-uri s3://bucket/dsmil/ckpt --hp epochs=2 --hp threads=1 --hp nonlinear_q=True
  --hp 'cache="ram"')
launch mpi "${MPI[@]}"
"${CHECK[@]}" mpi "$WORK/mpi" README.md || fail "the MPI spot job's CreateTrainingJob"
launch mpi_again "${MPI[@]}"
"${CHECK[@]}" unique "$WORK/mpi" "$WORK/mpi_again" || fail "two jobs share a checkpoint prefix"
launch options --train s3://bucket/dsmil/train --instance-type ml.g5.2xlarge --input-mode FastFile \
  --output-path s3://bucket/dsmil/out --volume-size 500 --keep-alive 1800 --subnets subnet-a,subnet-b \
  --security-group-ids sg-1 --kms-key arn:aws:kms:eu-west-1:123456789012:key/k1 --network-isolation \
  --encrypt-inter-container --env HDF5_USE_FILE_LOCKING=FALSE --env OMP_PROC_BIND=a=b --tags project=dsmil \
  --tags cost-centre=path-1 --hp epochs=40 --hp nonlinear_q=True
"${CHECK[@]}" options "$WORK/options" || fail "the launcher options"
launch tune --tune --train s3://bucket/dsmil/train --validation s3://bucket/dsmil/val --processes-per-host 2 \
  --hp seed=7 --hp epochs=20 --tune-range lr=1e-5:1e-3:log --tune-range epochs=10:40 --max-jobs 6 --max-parallel-jobs 2
"${CHECK[@]}" tune "$WORK/tune" || fail "the tuning job's request"

# push_image.sh --dry-run: the build, tag, login and push it would run.
scripts/sagemaker/push_image.sh --dry-run --account 123456789012 --region eu-west-1 --tag t1 > "$WORK/push.txt"
ECR=123456789012.dkr.ecr.eu-west-1.amazonaws.com
diff - "$WORK/push.txt" << EOF || fail "push_image.sh --dry-run"
docker build --file scripts/sagemaker/Dockerfile --tag dsmil:t1 .
docker tag dsmil:t1 $ECR/dsmil:t1
aws ecr get-login-password --region eu-west-1 | docker login --username AWS --password-stdin $ECR
docker push $ECR/dsmil:t1
$ECR/dsmil:t1
EOF

# --- 2. The MPI request as a job: 4 ranks on this host (the request's 2 hosts collapsed into one) ----------
"$BUILD/bench/dsmil_make_bags" --out "$WORK/train" --bags 24 --dim 32 --seed 1 --task-seed 3 > /dev/null
"$BUILD/bench/dsmil_make_bags" --out "$WORK/val" --bags 12 --dim 32 --seed 2 --task-seed 3 --prefix val_ > /dev/null
"${JOB[@]}" --request "$WORK/mpi" --train "$WORK/train" --validation "$WORK/val" --results "$WORK/chain" \
  > "$WORK/chain.log" 2>&1 || { cat "$WORK/chain.log"; fail "the launched MPI job failed"; }
grep -q '^mpirun --host [^ ]*:4 -np 4 ' "$WORK/chain.log" || fail "the toolkit did not run mpirun with 4 processes"
grep -q "/bin/sh -c ./entry.sh " "$WORK/chain.log" || fail "the ranks did not run the uploaded entry.sh"
grep -q '^\[1,0\]<stdout>:.*4 rank(s)' "$WORK/chain.log" || fail "rank 0 did not see 4 ranks"
grep -q -- '--nonlinear_q True' "$WORK/chain.log" || fail "the request's hyperparameters did not reach the ranks"
grep -q '^\[1,0\]<stdout>:\[metrics\] .*val_auc=' "$WORK/chain.log" || fail "no validation metrics"
[ -s "$WORK/chain/model/model.pt" ] || fail "no model in /opt/ml/model"

# --- 2b. Batch inference: eval_launch.py's CreateProcessingJob, materialised and run with the model just trained --
launch_eval() {
  env -i PATH="$PATH" HOME="$WORK/home" LANG=C.UTF-8 PYTHONPATH="$REPO/tests/e2e/aws_local" \
    DSMIL_AWS_CAPTURE="$WORK/eval" AWS_DEFAULT_REGION=eu-west-1 AWS_EC2_METADATA_DISABLED=true \
    AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null SAGEMAKER_SUPPRESS_V2_WARNING=1 \
    SAGEMAKER_USER_CONFIG_OVERRIDE="$REPO/tests/e2e/aws_local/sagemaker-config.yaml" \
    "$VENV/bin/python" scripts/sagemaker/eval_launch.py "$@" > "$WORK/eval.log" 2>&1 ||
    { cat "$WORK/eval.log"; fail "eval_launch.py failed"; }
}
launch_eval --image-uri 123456789012.dkr.ecr.eu-west-1.amazonaws.com/dsmil:cpu \
  --role arn:aws:iam::123456789012:role/SageMakerRole --model s3://bucket/dsmil/out/job/output/model.tar.gz \
  --slides s3://bucket/dsmil/cohort2 --output s3://bucket/dsmil/predictions/cohort2 -- --threads 1 --on-bad-slide skip
tar -czf "$WORK/model.tar.gz" -C "$WORK/chain/model" .  # as SageMaker packs /opt/ml/model
# The request's inputs at their local paths under a fake /opt/ml, its entry point (/opt/dsmil is the repository
# in the images) run with its arguments; returns the entry point's status in EVAL_STATUS.
run_processing() {
  rm -rf "$WORK/proc"
  "$VENV/bin/python" - "$WORK/eval/requests.jsonl" "$WORK/proc" "$WORK/model.tar.gz" "$WORK/val" "$REPO" \
    > "$WORK/proc.cmd" << 'PY'
import json, os, shutil, sys
requests, root, model, slides, repo = sys.argv[1:]
job = [json.loads(l)["params"] for l in open(requests) if '"CreateProcessingJob"' in l][-1]
assert job["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1
assert job["Environment"]["HDF5_USE_FILE_LOCKING"] == "FALSE"
inputs = {i["InputName"]: i["S3Input"] for i in job["ProcessingInputs"]}
assert inputs["model"]["S3Uri"] == "s3://bucket/dsmil/out/job/output/model.tar.gz"
assert inputs["slides"]["S3Uri"] == "s3://bucket/dsmil/cohort2"
assert all(i["S3DataDistributionType"] == "FullyReplicated" for i in inputs.values())
(output,) = job["ProcessingOutputConfig"]["Outputs"]
assert output["S3Output"]["S3Uri"] == "s3://bucket/dsmil/predictions/cohort2", output
local = lambda path: root + path[len("/opt/ml"):]
os.makedirs(local(inputs["model"]["LocalPath"]))
shutil.copy(model, local(inputs["model"]["LocalPath"]))
shutil.copytree(slides, local(inputs["slides"]["LocalPath"]))
os.makedirs(local(output["S3Output"]["LocalPath"]))
spec = job["AppSpecification"]
entry = spec["ContainerEntrypoint"][0].replace("/opt/dsmil", repo)
print("\n".join([entry] + spec.get("ContainerArguments", [])))
PY
  mapfile -t CMD < "$WORK/proc.cmd"
  EVAL_STATUS=0
  DSMIL_PROCESSING_ROOT="$WORK/proc" DSMIL_SAGEMAKER_ROOT=/nonexistent/opt/ml PATH="$BUILD/eval:$PATH" "${CMD[@]}" \
    > "$WORK/proc.log" 2>&1 || EVAL_STATUS=$?
}
run_processing
[ "$EVAL_STATUS" = 0 ] || { cat "$WORK/proc.log"; fail "the processing job failed"; }
OUT=$WORK/proc/processing/output
[ "$(tail -n +2 "$OUT/predictions.csv" | wc -l)" = 12 ] || fail "predictions.csv does not have the 12 slides"
[ "$(find "$OUT/attention" -type f | wc -l)" = 12 ] || fail "not one attention file per slide"
[ -s "$OUT/plots/roc.png" ] && [ -s "$OUT/metrics.json" ] || fail "no ROC plot or metrics in the output"
tr '\n' ' ' < "$WORK/proc.cmd" | grep -q -- 'eval_entry.sh --threads 1 --on-bad-slide skip $' ||
  fail "the job's entry point and arguments are not eval_entry.sh with the dsmil_eval options"
# A model.tar.gz holding fold directories (fold_<k>/model.pt: one job over all folds) scores with every fold's
# model, as dsmil_eval given each of them does. A second model (another seed) makes the vote differ from either.
"$BUILD/train/dsmil_train" --train "$WORK/train" --epochs 2 --seed 9 --threads 1 --tensorboard-dir none \
  --model-dir "$WORK/folds_model/fold_1" --output-dir "$WORK/fold_1_out" > "$WORK/fold_1.log" 2>&1 ||
  { cat "$WORK/fold_1.log"; fail "training the second fold's model failed"; }
cp -r "$WORK/chain/model" "$WORK/folds_model/fold_0"
tar -czf "$WORK/model.tar.gz" -C "$WORK/folds_model" fold_0 fold_1
"$BUILD/eval/dsmil_eval" --model "$WORK/folds_model/fold_0" --model "$WORK/folds_model/fold_1" --test "$WORK/val" \
  --out "$WORK/vote" --threads 1 > "$WORK/vote.log" 2>&1 || { cat "$WORK/vote.log"; fail "dsmil_eval, two models"; }
cmp -s "$WORK/vote/predictions.csv" "$OUT/predictions.csv" && fail "the two models' vote equals the first model's"
run_processing
[ "$EVAL_STATUS" = 0 ] || { cat "$WORK/proc.log"; fail "the processing job with fold directories failed"; }
cmp "$WORK/vote/predictions.csv" "$OUT/predictions.csv" || fail "fold directories: not every fold's model scored"
# An archive with neither model.pt nor fold_<k>/model.pt: non-zero, the reason in /opt/ml/output/message.
tar -czf "$WORK/model.tar.gz" -C "$WORK/folds_model/fold_1" model.pth
run_processing
[ "$EVAL_STATUS" != 0 ] && grep -q '.tar.gz holds no model.pt (nor fold_<k>/model.pt)' "$WORK/proc/output/message" ||
  { cat "$WORK/proc.log"; fail "an archive without a model did not fail with its reason"; }
# A model archive that is not one: non-zero, the reason in /opt/ml/output/message (the job's ExitMessage).
head -c 200 "$WORK/model.tar.gz" > "$WORK/model.tar.gz.part" && mv "$WORK/model.tar.gz.part" "$WORK/model.tar.gz"
run_processing
[ "$EVAL_STATUS" != 0 ] && grep -q 'cannot unpack .*model.tar.gz' "$WORK/proc/output/message" ||
  { cat "$WORK/proc.log"; fail "a broken model archive did not fail with its reason"; }

# --- 3. Managed spot under MPI: SIGTERM to the container's PID 1 reaches every rank ----------------------------
"$BUILD/bench/dsmil_make_bags" --out "$WORK/big" --bags 24 --dim 256 --log-mean 8 --log-sigma 0.3 --seed 4 \
  --task-seed 3 > /dev/null
"$BUILD/bench/dsmil_make_bags" --out "$WORK/big_val" --bags 16 --dim 256 --log-mean 8 --log-sigma 0.3 --seed 5 \
  --task-seed 3 --prefix val_ > /dev/null
launch spot --train s3://bucket/dsmil/train --validation s3://bucket/dsmil/val --processes-per-host 2 --spot \
  --checkpoint-s3-uri s3://bucket/dsmil/ckpt --hp epochs=8 --hp threads=1 --hp checkpoint_every_steps=3 \
  --hp dropout_patch=0.2 --hp standardize=True
"${JOB[@]}" --request "$WORK/spot" --train "$WORK/big" --validation "$WORK/big_val" --results "$WORK/whole" \
  > "$WORK/whole.log" 2>&1 || { cat "$WORK/whole.log"; fail "the uninterrupted 2-rank job failed"; }
GRACE=30 "${JOB[@]}" --request "$WORK/spot" --spot --train "$WORK/big" --validation "$WORK/big_val" \
  --results "$WORK/reclaimed" > "$WORK/reclaimed.log" 2>&1 || { cat "$WORK/reclaimed.log"; fail "the 2-rank spot job failed"; }
grep '\[local_job\]\|\[entry\]\|resuming\|interrupted' "$WORK/reclaimed.log"
grep -q 'stopped by itself within' "$WORK/reclaimed.log" || fail "the job did not stop within 30 s of SIGTERM"
grep -Eq '^\[entry\] TERM: forwarding to dsmil_train process\(es\) [0-9]+ [0-9]+ $' "$WORK/reclaimed.log" ||
  fail "entry.sh did not signal both ranks"
for rank in 0 1; do
  grep -q "^\[1,$rank\]<std...>:.*interrupted by SIGTERM: stopped after writing a checkpoint" "$WORK/reclaimed.log" ||
    fail "rank $rank did not stop with a checkpoint"
done
cmp "$WORK/whole/model/model.pth" "$WORK/reclaimed/model/model.pth" || fail "the spot job's model differs"
cmp "$WORK/whole/model/model.pt" "$WORK/reclaimed/model/model.pt" || fail "the spot job's model.pt differs"
# --- 4. --folds 3: three jobs, one per fold; cv_summary.py reads their final metrics back -----------------------
"$BUILD/bench/dsmil_make_bags" --out "$WORK/cv" --bags 30 --dim 16 --seed 6 --task-seed 3 > /dev/null
launch folds --train s3://bucket/dsmil/train --folds 3 --checkpoint-s3-uri s3://bucket/dsmil/ckpt --hp epochs=3 \
  --hp threads=1
# Each fold run as its job would (its hyperparameters on the command line); SageMaker's FinalMetricDataList is
# the last match of each of the request's metric regexes in the job's log.
"$VENV/bin/python" - "$WORK/folds" "$BUILD/train/dsmil_train" "$WORK/cv" << 'PY' || fail "the --folds jobs"
import json, os, re, subprocess, sys
capture, trainer, data = sys.argv[1:]
jobs = [json.loads(l)["params"] for l in open(capture + "/requests.jsonl") if '"CreateTrainingJob"' in l]
assert [j["HyperParameters"] for j in jobs] == [{"epochs": "3", "threads": "1", "folds": "3", "fold": str(i)}
                                                for i in range(3)], [j["HyperParameters"] for j in jobs]
assert len({j["CheckpointConfig"]["S3Uri"] for j in jobs}) == 3
answers, expected = {}, []
for job in jobs:
    name, out = job["TrainingJobName"], f"{capture}/{job['TrainingJobName']}"
    args = [a for k, v in job["HyperParameters"].items() for a in ("--" + k, v)]
    log = subprocess.run([trainer, "--train", data, "--model-dir", out + "/model", "--output-dir", out + "/output",
                          "--tensorboard-dir", "none", *args], check=True, capture_output=True, text=True,
                         env=dict(os.environ, DSMIL_SAGEMAKER_ROOT="/nonexistent/opt/ml")).stdout
    final = []
    for d in job["AlgorithmSpecification"]["MetricDefinitions"]:
        found = re.findall(d["Regex"], log)
        if found:
            final.append({"MetricName": d["Name"], "Value": float(found[-1]), "Timestamp": 0})
    answers[name] = {"TrainingJobStatus": "Completed", "FinalMetricDataList": final}
    expected.append(json.load(open(out + "/output/metrics.json"))["summary"]["validation"]["mean_auc"])
json.dump(answers, open(capture + "/training_jobs.json", "w"))
json.dump({"names": [j["TrainingJobName"] for j in jobs], "expected": sum(expected) / 3}, open(capture + "/cv.json", "w"))
PY
mapfile -t NAMES < <("$VENV/bin/python" -c 'import json, sys; print(*json.load(open(sys.argv[1]))["names"], sep="\n")' \
  "$WORK/folds/cv.json")
env -i PATH="$PATH" HOME="$WORK/home" PYTHONPATH="$REPO/tests/e2e/aws_local" DSMIL_AWS_CAPTURE="$WORK/summary" \
  DSMIL_AWS_TRAINING_JOBS="$WORK/folds/training_jobs.json" AWS_DEFAULT_REGION=eu-west-1 AWS_EC2_METADATA_DISABLED=true \
  AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
  "$VENV/bin/python" scripts/sagemaker/cv_summary.py "${NAMES[@]}" --metric best:validation_auc --json "$WORK/cv_summary.json" \
  > "$WORK/cv_summary.log" 2>&1 || { cat "$WORK/cv_summary.log"; fail "cv_summary.py failed"; }
cat "$WORK/cv_summary.log"
"$VENV/bin/python" - "$WORK/cv_summary.json" "$WORK/folds/cv.json" << 'PY' || fail "the cross-validation summary"
import json, sys
summary = json.load(open(sys.argv[1]))["summary"]["best:validation_auc"]
expected = json.load(open(sys.argv[2]))["expected"]
assert summary["folds"] == 3 and abs(summary["mean"] - expected) < 1e-6, (summary, expected)
PY

# --- 5. Job layouts dsmil_train refuses: two hosts without MPI, a channel sharded by S3 key -------------------
mkdir -p "$WORK/two_hosts/input/config" "$WORK/two_hosts/output"
echo '{"current_host": "algo-1", "hosts": ["algo-1", "algo-2"]}' > "$WORK/two_hosts/input/config/resourceconfig.json"
STATUS=0
DSMIL_SAGEMAKER_ROOT="$WORK/two_hosts" "$BUILD/train/dsmil_train" --train "$WORK/train" --epochs 1 \
  --model-dir "$WORK/m" --output-dir "$WORK/o" > "$WORK/two_hosts.log" 2>&1 || STATUS=$?
[ "$STATUS" = 1 ] && grep -q '2 hosts (algo-1, algo-2).*mpi distribution' "$WORK/two_hosts.log" ||
  { cat "$WORK/two_hosts.log"; fail "two hosts without MPI were not refused"; }
grep -q 'resourceconfig.json' "$WORK/two_hosts/output/failure" || fail "no failure reason for two hosts"
echo "sagemaker_launch: all checks passed"
