#!/bin/sh
# dsmil_eval as a SageMaker Processing job (the container entry point scripts/sagemaker/eval_launch.py asks
# for): unpacks the trained model.tar.gz found in /opt/ml/processing/model, scores the slides in
# /opt/ml/processing/input/slides and writes predictions, per-slide attention files and plots to
# /opt/ml/processing/output, which the job uploads. Arguments are passed on to dsmil_eval. On failure the
# reason goes to /opt/ml/output/message (the job's ExitMessage) and the exit status is non-zero.
# A model.tar.gz with fold_<k>/model.pt (one job over all folds) scores with every fold's model (majority vote).
#   DSMIL_PROCESSING_ROOT  replaces /opt/ml (local runs and tests)
ROOT=${DSMIL_PROCESSING_ROOT:-/opt/ml}
MODEL=$ROOT/processing/model
SLIDES=$ROOT/processing/input/slides
OUT=$ROOT/processing/output
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

fail() {
  mkdir -p "$ROOT/output"
  printf '%s\n' "$*" | head -c 1024 > "$ROOT/output/message"
  echo "eval_entry: $*" >&2
  exit 1
}

archives=$(find "$MODEL" -maxdepth 1 -name '*.tar.gz' 2> /dev/null)
[ "$(printf '%s\n' "$archives" | grep -c .)" = 1 ] || fail "expected one model .tar.gz in $MODEL, found: ${archives:-none}"
mkdir -p "$WORK/model" "$OUT"
tar -xzf "$archives" -C "$WORK/model" 2> "$WORK/tar.err" || fail "cannot unpack $archives: $(head -c 300 "$WORK/tar.err")"
if [ -f "$WORK/model/model.pt" ]; then
  models="--model $WORK/model"
else
  models=$(find "$WORK/model" -mindepth 2 -maxdepth 2 -name model.pt -printf '--model %h\n' | sort -V)  # fold_10 after fold_9
  [ -n "$models" ] || fail "$archives holds no model.pt (nor fold_<k>/model.pt)"
fi
# stderr to the log as it comes and to a file, for the reason; the status through a file (no pipefail in sh).
# shellcheck disable=SC2086 # $models is a list of options over paths without spaces (mktemp's)
{ dsmil_eval $models --test "$SLIDES" --out "$OUT" --attention --plots "$OUT/plots" "$@" 2>&1
  echo $? > "$WORK/status"; } | tee "$WORK/log"
status=$(cat "$WORK/status")
if [ "$status" != 0 ]; then
  reason=$(grep 'error' "$WORK/log" | tail -n 3)
  fail "dsmil_eval exited with status $status: ${reason:-$(tail -n 3 "$WORK/log")}"
fi
