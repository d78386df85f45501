#!/usr/bin/env bash
# Runs a complete SageMaker training job on this machine through SageMaker's own training toolkit (PyPI
# sagemaker-training, installed into .venv-sagemaker by python_env.sh): builds the /opt/ml tree a job sees
# (channels, hyperparameters.json as the Python SDK writes it, resourceconfig.json naming this host), puts
# our entry point in a submit directory, starts the container's entry point as SageMaker does
# (`entry.sh train`, which runs the toolkit's `train` in script mode), and checks the artefacts.
#
#   scripts/sagemaker/local_job.sh --train DIR [--validation DIR] [--test DIR] [--hp KEY=VALUE ...]
#       [--ranks N] [--byoc] [--request DIR] [--spot] [--checkpoints] [--expect-failure] [--results DIR]
#       [--build DIR] [--keep]
#
#   --hp KEY=VALUE   a hyperparameter as a user writes it in the Estimator's dict; VALUE is a Python literal
#                    (3, 0.0002, True, 'text'), stored JSON-encoded as the SDK does
#   --ranks N        the toolkit's MPI distribution on this host: N processes (it starts sshd itself, bound
#                    to 127.0.0.1 here, and runs mpirun)
#   --byoc           a bring-your-own-container job instead: no toolkit, no SM_* variables; the image's entry
#                    point is started as SageMaker starts a container (`entry.sh train`) and gets SIGTERM itself
#   --request DIR    the job a launcher asked for: DIR is what tests/e2e/aws_local/sitecustomize.py captured
#                    (requests.jsonl and the S3 uploads). Its last CreateTrainingJob request becomes the tree:
#                    its hyperparameters (sagemaker_submit_directory pointing at the captured copy of the
#                    uploaded source archive, which the toolkit unpacks), ranks per host, checkpoint config and
#                    input data config; its hosts are collapsed into this one. The --train etc. directories are
#                    its channels' data. No --hp, --ranks or --byoc with it.
#   --checkpoints    give the job /opt/ml/checkpoints, as checkpoint_s3_uri does
#   --spot           (implies --checkpoints) reclaim the instance mid-training once a checkpoint exists:
#                    SIGTERM to the entry point (the container's PID 1), SIGKILL of the whole process group
#                    if it has not ended $GRACE s later (default 30), then the same job started again on the
#                    same /opt/ml/checkpoints, which must resume
#   --expect-failure the job must fail, with its reason in /opt/ml/output/failure
#   --results DIR    copy /opt/ml/model, /opt/ml/output and the log to DIR before cleaning up
#   --keep           leave /opt/ml in place afterwards
#
# It writes /opt/ml, so it refuses to run when /opt/ml exists and was not made by it; runs are serialised
# with a lock. Exit status: 0 when the job (or, with --expect-failure, its failure) went as expected.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD=build
RANKS=1
SPOT=0
CHECKPOINTS=0
EXPECT_FAILURE=0
BYOC=0
KEEP=0
RESULTS=""
GRACE=${GRACE:-30}
REQUEST=""
declare -A CHANNELS=()
HPS=()
while [ $# -gt 0 ]; do
  case $1 in
    --train | --validation | --test) CHANNELS[${1#--}]=$(realpath "$2"); shift 2 ;;
    --hp) HPS+=("$2"); shift 2 ;;
    --ranks) RANKS=$2; shift 2 ;;
    --spot) SPOT=1; CHECKPOINTS=1; shift ;;
    --byoc) BYOC=1; shift ;;
    --request) REQUEST=$(realpath "$2"); shift 2 ;;
    --checkpoints) CHECKPOINTS=1; shift ;;
    --expect-failure) EXPECT_FAILURE=1; shift ;;
    --results) RESULTS=$(realpath -m "$2"); shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "local_job.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[ -n "${CHANNELS[train]:-}" ] || { echo "local_job.sh: --train DIR is required" >&2; exit 2; }
if [ "$BYOC" = 1 ] && [ "$RANKS" -gt 1 ]; then
  echo "local_job.sh: --ranks needs the toolkit (the mpi distribution is script mode), not --byoc" >&2
  exit 2
fi
if [ -n "$REQUEST" ] && { [ "$BYOC" = 1 ] || [ "$RANKS" != 1 ] || [ ${#HPS[@]} -gt 0 ]; }; then
  echo "local_job.sh: --request sets the hyperparameters and ranks itself: no --hp, --ranks or --byoc" >&2
  exit 2
fi
BUILD=$(realpath "$BUILD")
say() { echo "[local_job] $*"; }
fail() { echo "[local_job] FAILED: $*" >&2; exit 1; }

OPT_ML=/opt/ml
MARKER=$OPT_ML/.made-by-dsmil-local-job
exec 9> /tmp/dsmil-local-job.lock
flock 9
if [ -e "$OPT_ML" ] && [ ! -e "$MARKER" ]; then
  fail "$OPT_ML exists and was not made by this script: refusing to touch it"
fi
[ -x "$BUILD/train/dsmil_train" ] || BUILD_DIR=$BUILD scripts/build.sh
VENV=$(scripts/sagemaker/python_env.sh)
if [ -n "$REQUEST" ]; then
  # Ranks per host and whether the job checkpoints, from the request.
  read -r RANKS CHECKPOINTS < <("$VENV/bin/python" - "$REQUEST" << 'EOF'
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1] + "/requests.jsonl")]
job = [r["params"] for r in reqs if r["operation"] == "CreateTrainingJob"][-1]
print(json.loads(job["HyperParameters"].get("sagemaker_mpi_num_of_processes_per_host", "1")),
      int("CheckpointConfig" in job))
EOF
  )
fi
if [ "$RANKS" -gt 1 ] && [ ! -x /usr/sbin/sshd ]; then scripts/install_deps.sh; fi

WORK=$(mktemp -d)
TOOLKIT=""
SSHD_BEFORE=$(pgrep -x sshd || true)
cleanup() {
  if [ -n "$TOOLKIT" ]; then kill -9 -- "-$TOOLKIT" 2> /dev/null || true; fi
  # The toolkit starts sshd for an MPI job and leaves it running: stop the ones it started.
  local pid
  for pid in $(pgrep -x sshd || true); do
    grep -qx "$pid" <<< "$SSHD_BEFORE" || kill "$pid" 2> /dev/null || true
  done
  rm -f /etc/ssh/sshd_config.d/dsmil-local-job.conf
  if [ "$KEEP" = 0 ] && [ -e "$MARKER" ]; then rm -rf "$OPT_ML"; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- The /opt/ml tree ------------------------------------------------------------------------------
HOST=$(hostname)
# The interface mpirun's TCP transports are told to use: the default route's, as eth0 is in a job.
IFACE=$(awk '$2 == "00000000" { print $1; exit }' /proc/net/route)
IFACE=${IFACE:-lo}
make_tree() {
  rm -rf "$OPT_ML"
  mkdir -p "$OPT_ML/input/config" "$OPT_ML/input/data" "$OPT_ML/model" "$OPT_ML/output/data" "$OPT_ML/code"
  touch "$MARKER"
  local name
  for name in "${!CHANNELS[@]}"; do cp -r "${CHANNELS[$name]}" "$OPT_ML/input/data/$name"; done
  if [ "$CHECKPOINTS" = 1 ]; then
    mkdir -p "$OPT_ML/checkpoints"
    echo '{"LocalPath": "/opt/ml/checkpoints", "S3Uri": "s3://local-job/checkpoints"}' \
      > "$OPT_ML/input/config/checkpointconfig.json"
  fi
  if [ -n "$REQUEST" ]; then
    "$VENV/bin/python" - "$OPT_ML" "$REQUEST" "$HOST" "$IFACE" "${!CHANNELS[@]}" << 'EOF'
import json, sys
opt_ml, request, host, iface, *channels = sys.argv[1:]
reqs = [json.loads(l) for l in open(request + "/requests.jsonl")]
job = [r["params"] for r in reqs if r["operation"] == "CreateTrainingJob"][-1]
config = opt_ml + "/input/config/"
hps = dict(job["HyperParameters"])
if "sagemaker_submit_directory" in hps:
    # s3://bucket/key -> the captured copy of that object: the toolkit unpacks a local archive itself.
    bucket_key = json.loads(hps["sagemaker_submit_directory"])[len("s3://"):]
    hps["sagemaker_submit_directory"] = json.dumps(f"{request}/s3/{bucket_key}")
json.dump(hps, open(config + "hyperparameters.json", "w"), indent=1)
instance_type = job["ResourceConfig"]["InstanceType"]
json.dump({"current_host": host, "hosts": [host], "network_interface_name": iface,
           "current_instance_type": instance_type, "current_group_name": "homogeneousCluster",
           "instance_groups": [{"instance_group_name": "homogeneousCluster", "hosts": [host],
                                "instance_type": instance_type}]},
          open(config + "resourceconfig.json", "w"), indent=1)
mode = job["AlgorithmSpecification"]["TrainingInputMode"]
inputs = {c["ChannelName"]: {"TrainingInputMode": c.get("InputMode", mode), "RecordWrapperType": "None",
                             "S3DistributionType": c["DataSource"]["S3DataSource"]["S3DataDistributionType"]}
          for c in job["InputDataConfig"]}
if sorted(inputs) != sorted(channels):
    sys.exit(f"local_job.sh: the request's channels {sorted(inputs)} are not the given ones {sorted(channels)}")
json.dump(inputs, open(config + "inputdataconfig.json", "w"), indent=1)
if "CheckpointConfig" in job:
    json.dump(job["CheckpointConfig"], open(config + "checkpointconfig.json", "w"), indent=1)
EOF
    return
  fi
  # What the Python SDK writes: every value json.dumps'ed into a string, plus the toolkit's sagemaker_ keys.
  "$VENV/bin/python" - "$OPT_ML" "$WORK/submit" "$RANKS" "$HOST" "$IFACE" "$BYOC" "${!CHANNELS[@]}" -- "${HPS[@]}" << 'EOF'
import ast, json, sys
opt_ml, submit, ranks, host, iface, byoc = sys.argv[1:7]
rest = sys.argv[7:]
channels, hps = rest[:rest.index("--")], rest[rest.index("--") + 1:]
values = {}
for item in hps:
    key, _, text = item.partition("=")
    try:
        values[key] = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        values[key] = text
if byoc == "0":
    values["sagemaker_program"] = "entry.sh"
    values["sagemaker_submit_directory"] = submit
    values["sagemaker_container_log_level"] = 20
if int(ranks) > 1:
    values["sagemaker_mpi_enabled"] = True
    values["sagemaker_mpi_num_of_processes_per_host"] = int(ranks)
    values["sagemaker_mpi_custom_mpi_options"] = "--oversubscribe"
config = opt_ml + "/input/config/"
json.dump({k: json.dumps(v) for k, v in values.items()}, open(config + "hyperparameters.json", "w"), indent=1)
json.dump({"current_host": host, "hosts": [host], "network_interface_name": iface,
           "current_instance_type": "local", "current_group_name": "homogeneousCluster",
           "instance_groups": [{"instance_group_name": "homogeneousCluster", "instance_type": "local",
                                "hosts": [host]}]}, open(config + "resourceconfig.json", "w"), indent=1)
json.dump({c: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated",
               "RecordWrapperType": "None"} for c in channels}, open(config + "inputdataconfig.json", "w"), indent=1)
EOF
}

# The entry point (sagemaker_program) is the images' own, with this build's dsmil_train first on the PATH
# (which the toolkit passes on to mpirun's ranks with -x PATH).
mkdir -p "$WORK/submit"
cp scripts/sagemaker/entry.sh "$WORK/submit/entry.sh"
export PATH="$BUILD/train:$PATH"

if [ "$RANKS" -gt 1 ]; then
  # The toolkit runs `/usr/sbin/sshd -D` itself; keep it off the network.
  mkdir -p /run/sshd /etc/ssh/sshd_config.d
  ssh-keygen -A > /dev/null
  echo "ListenAddress 127.0.0.1" > /etc/ssh/sshd_config.d/dsmil-local-job.conf
fi

# Starts the job as SageMaker starts a container, `entry.sh train` (the container's PID 1), in its own process
# group, its output to file $1: entry.sh runs the toolkit (script mode) or execs dsmil_train (BYOC).
# wait_toolkit sets STATUS.
export DSMIL_TOOLKIT_TRAIN="$VENV/bin/train"
run_toolkit() {
  rm -rf "$OPT_ML/code"
  mkdir -p "$OPT_ML/code"
  setsid scripts/sagemaker/entry.sh train > "$1" 2>&1 < /dev/null &
  TOOLKIT=$!
}
# Whether process $1 is alive (an exited child stays a zombie until waited for).
running() {
  local state
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2> /dev/null) && [ -n "$state" ] && [ "$state" != Z ]
}
wait_toolkit() {
  STATUS=0
  wait "$TOOLKIT" || STATUS=$?
  TOOLKIT=""
}

make_tree
LOG="$WORK/job.log"
if [ "$SPOT" = 1 ]; then
  say "spot job: start, reclaim once a checkpoint exists, restart"
  run_toolkit "$WORK/first.log"
  until grep -q '\[ckpt\] wrote' "$WORK/first.log"; do
    kill -0 "$TOOLKIT" 2> /dev/null || { cat "$WORK/first.log"; fail "the job ended before its first checkpoint"; }
    sleep 0.1
  done
  kill -TERM "$TOOLKIT"
  # As SageMaker does: SIGKILL what is left of the container once the grace period is over.
  START=$SECONDS
  while running "$TOOLKIT" && [ $((SECONDS - START)) -lt "$GRACE" ]; do sleep 0.2; done
  if running "$TOOLKIT"; then
    say "still running $GRACE s after SIGTERM: killed"
  else
    say "stopped by itself within $((SECONDS - START + 1)) s of SIGTERM"
  fi
  kill -9 -- "-$TOOLKIT" 2> /dev/null || true
  wait_toolkit
  say "reclaimed (status $STATUS); $(find "$OPT_ML/checkpoints" -maxdepth 1 -name 'ckpt-*' | wc -l) checkpoint(s) kept"
  if grep -q 'Reporting training SUCCESS\|\[train\] done in' "$WORK/first.log"; then
    fail "the job finished before it was reclaimed"
  fi
  # A restarted spot job gets fresh model and output directories and the synced checkpoints back.
  rm -rf "$OPT_ML/model" "$OPT_ML/output"
  mkdir -p "$OPT_ML/model" "$OPT_ML/output/data"
  cat "$WORK/first.log" > "$LOG"
  run_toolkit "$WORK/second.log"
  wait_toolkit
  cat "$WORK/second.log" >> "$LOG"
  grep -q '\[ckpt\] resuming from checkpoint' "$WORK/second.log" || { cat "$WORK/second.log"; fail "the restart did not resume"; }
else
  say "job: $RANKS process(es), channels ${!CHANNELS[*]}"
  run_toolkit "$LOG"
  wait_toolkit
fi

cat "$LOG"
if [ -n "$RESULTS" ]; then
  rm -rf "$RESULTS"
  mkdir -p "$RESULTS"
  cp -r "$OPT_ML/model" "$OPT_ML/output" "$RESULTS/"
  cp "$LOG" "$RESULTS/job.log"
fi
if [ "$EXPECT_FAILURE" = 1 ]; then
  [ "$STATUS" != 0 ] || fail "the job succeeded; a failure was expected"
  [ -s "$OPT_ML/output/failure" ] || fail "no reason in $OPT_ML/output/failure"
  say "failed as expected (status $STATUS): $(head -c 300 "$OPT_ML/output/failure")"
  exit 0
fi
[ "$STATUS" = 0 ] || fail "the toolkit exited with status $STATUS"
[ -s "$OPT_ML/model/model.pt" ] || fail "no model in $OPT_ML/model"
[ -s "$OPT_ML/output/data/metrics.json" ] || fail "no metrics in $OPT_ML/output/data"
say "OK: model in $OPT_ML/model, metrics in $OPT_ML/output/data"
