#!/usr/bin/env bash
# SageMaker's FastFile input mode: the channels are a FUSE mount whose files are fetched from S3 as they are
# read. Here the files are placeholders of the right size holding no data, and tests/e2e/lazy_files.c
# (LD_PRELOADed) serves their bytes from the real files only through read/pread, in short pieces, slowly,
# with an EINTR now and then. For the contiguous layout and CLAM's one chunk per instance (read into memory
# by HDF5's core driver):
#  1. dsmil_train on lazy training and validation channels writes the same model bytes as on the plain
#     files, its loader's reader thread doing the reads; dsmil_eval scores a lazy channel as a plain one
#     (predictions, attention files with coords);
#  2. the placeholders read any other way (mmap, or no lazy layer) are refused as not HDF5, naming the file.
# And HDF5's file locks on a file system without them (flock fails with ENOLCK): HDF5_USE_FILE_LOCKING=FALSE
# (as the images set it) means no lock is taken; without it the slides cannot be opened; entry.sh sets it
# for ranks started without the image's environment (a rank on another host, started over ssh).
#   usage: fastfile.sh BUILD_DIR LAZY_FILES_SO
set -euo pipefail
BUILD=$(realpath "$1")
SHIM=$(realpath "$2")
cd "$(dirname "$0")/../.."
source tests/e2e/lib.sh
export DSMIL_SAGEMAKER_ROOT=/nonexistent/dsmil-tests/opt/ml HDF5_USE_FILE_LOCKING=FALSE
TRAIN=("$BUILD/train/dsmil_train" --epochs 3 --threads 1 --tensorboard-dir none --dropout-patch 0.2)

# The lazy view of $WORK/src/$1 at $WORK/lazy/$1: labels.csv as it is, every .h5 a sparse placeholder.
placeholders() {
  mkdir -p "$WORK/lazy/$1"
  cp "$WORK/src/$1/labels.csv" "$WORK/lazy/$1/"
  for f in "$WORK/src/$1"/*.h5; do truncate -s "$(stat -c %s "$f")" "$WORK/lazy/$1/${f##*/}"; done
}
# Runs a command with the lazy layer (1366 to 4096 bytes per read, 200 us before each, every 29th read EINTR);
# its counts land in $WORK/$1.stats.
lazily() {
  local stats=$WORK/$1.stats
  shift
  rm -f "$stats"
  DSMIL_LAZY_DIR="$WORK/lazy" DSMIL_LAZY_SOURCE="$WORK/src" DSMIL_LAZY_PIECE=4096 DSMIL_LAZY_DELAY_US=200 \
    DSMIL_LAZY_EINTR=29 DSMIL_LAZY_STATS="$stats" LD_PRELOAD="$SHIM" "$@"
}
stat_of() { sed -n "s/.* $2=\([0-9]*\).*/\1/p" "$WORK/$1.stats" | head -n 1; }

for layout in contiguous clam; do
  L=$layout
  "$BUILD/bench/dsmil_make_bags" --out "$WORK/src/$L-train" --bags 20 --dim 32 --layout "$L" --seed 1 \
    --task-seed 3 > /dev/null
  "$BUILD/bench/dsmil_make_bags" --out "$WORK/src/$L-val" --bags 10 --dim 32 --layout "$L" --seed 2 \
    --task-seed 3 --prefix val_ > /dev/null
  placeholders "$L-train"
  placeholders "$L-val"
  SIZE=$(cat "$WORK/src/$L-train"/*.h5 "$WORK/src/$L-val"/*.h5 | wc -c)

  # --- 1. Training and scoring on lazy channels --------------------------------------------------------
  "${TRAIN[@]}" --train "$WORK/src/$L-train" --validation "$WORK/src/$L-val" --model-dir "$WORK/$L/plain/model" \
    --output-dir "$WORK/$L/plain/output" > "$WORK/$L-plain.log" 2>&1 ||
    { cat "$WORK/$L-plain.log"; fail "$L: training on the plain files failed"; }
  lazily "$L-train" "${TRAIN[@]}" --train "$WORK/lazy/$L-train" --validation "$WORK/lazy/$L-val" \
    --model-dir "$WORK/$L/lazy/model" --output-dir "$WORK/$L/lazy/output" > "$WORK/$L-lazy.log" 2>&1 ||
    { cat "$WORK/$L-lazy.log"; fail "$L: training on the lazy channels failed"; }
  cat "$WORK/$L-train.stats"
  for f in model.pth model.pt; do
    cmp "$WORK/$L/plain/model/$f" "$WORK/$L/lazy/model/$f" || fail "$L: $f differs from the plain files' one"
  done
  # The layer did what it is for: every byte came through it, in short reads, with EINTRs, no mapping.
  [ "$(stat_of "$L-train" bytes)" -ge "$SIZE" ] || fail "$L: fewer bytes read through the layer than the files hold"
  [ "$(stat_of "$L-train" short)" -gt 100 ] && [ "$(stat_of "$L-train" eintr)" -gt 0 ] ||
    fail "$L: the layer served no short reads or no EINTR"
  [ "$(stat_of "$L-train" mmaps)" = 0 ] && [ "$(stat_of "$L-train" flocks)" = 0 ] ||
    fail "$L: a lazy file was mapped or locked (HDF5_USE_FILE_LOCKING=FALSE not honoured)"
  # The bags are read ahead by the loader's reader thread, not by the training thread.
  [ $((2 * $(stat_of "$L-train" background))) -gt "$(stat_of "$L-train" reads)" ] ||
    fail "$L: most reads were not on the loader's reader thread"

  EVAL=("$BUILD/eval/dsmil_eval" --model "$WORK/$L/plain/model" --threads 1 --attention)
  "${EVAL[@]}" --test "$WORK/src/$L-val" --out "$WORK/$L/eval-plain" > "$WORK/$L-eval.log" 2>&1 ||
    { cat "$WORK/$L-eval.log"; fail "$L: dsmil_eval on the plain files failed"; }
  lazily "$L-eval" "${EVAL[@]}" --test "$WORK/lazy/$L-val" --out "$WORK/$L/eval-lazy" > "$WORK/$L-eval.log" 2>&1 ||
    { cat "$WORK/$L-eval.log"; fail "$L: dsmil_eval on the lazy channel failed"; }
  [ "$(stat_of "$L-eval" short)" -gt 0 ] || fail "$L: dsmil_eval did not read through the layer"
  cmp "$WORK/$L/eval-plain/predictions.csv" "$WORK/$L/eval-lazy/predictions.csv" || fail "$L: other predictions"
  for f in "$WORK/$L/eval-plain/attention"/*; do
    h5diff "$f" "$WORK/$L/eval-lazy/attention/${f##*/}" || fail "$L: ${f##*/} differs"
  done
  [ "$(find "$WORK/$L/eval-lazy/attention" -type f | wc -l)" = 10 ] || fail "$L: not one attention file per slide"

  # --- 2. The placeholders without the layer: refused, naming a file --------------------------------------
  if "${TRAIN[@]}" --train "$WORK/lazy/$L-train" --model-dir "$WORK/$L/bare/m" --output-dir "$WORK/$L/bare/o" \
    > "$WORK/$L-bare.log" 2>&1; then
    fail "$L: the placeholders trained without the lazy layer (the test would not notice a reader bypassing it)"
  fi
  has "$WORK/$L-bare.log" "$WORK/lazy/$L-train/slide_[0-9]*.h5: not an HDF5 file"
done

# The layer's teeth: one read of a whole file returns a part of it; a mapping of a file holds only zeros.
# (Debian's python3, the one install_deps.sh installs, not a version manager's shim script.)
SLIDE=$WORK/lazy/clam-train/slide_0000.h5
GOT=$(lazily teeth /usr/bin/python3 -c '
import os, sys
print(len(os.read(os.open(sys.argv[1], os.O_RDONLY), 1 << 24)))' "$SLIDE")
[ "$GOT" -gt 0 ] && [ "$GOT" -lt "$(stat -c %s "$SLIDE")" ] || fail "one read got $GOT bytes of $SLIDE, not a part"
lazily teeth /usr/bin/python3 -c '
import mmap, sys
with open(sys.argv[1], "rb") as f:
    sys.exit(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)[:] != bytes(len(f.read())))' "$SLIDE" ||
  fail "a mapping of $SLIDE is not all zeros"
[ "$(stat_of teeth mmaps)" = 1 ] || fail "the layer did not see the mapping"

# --- 3. HDF5's file locks on a file system without them ---------------------------------------------------
export DSMIL_LAZY_FLOCK_ERRNO=37  # ENOLCK, no locks available (HDF5 1.10 goes on without a lock only on ENOSYS)
LOCKED=("$BUILD/train/dsmil_train" --train "$WORK/lazy/clam-train" --epochs 1 --threads 1 --tensorboard-dir none)
if lazily locks env -u HDF5_USE_FILE_LOCKING "${LOCKED[@]}" --model-dir "$WORK/l1/m" --output-dir "$WORK/l1/o" \
  > "$WORK/locks.log" 2>&1; then
  fail "without HDF5_USE_FILE_LOCKING=FALSE the slides opened anyway (the lock checks below would prove nothing)"
fi
[ "$(stat_of locks flocks)" -gt 0 ] || fail "HDF5 took no lock"
has "$WORK/locks.log" "$WORK/lazy/clam-train/slide_[0-9]*.h5: .*unable to lock file"
# A rank runs `entry.sh ARGS` (the toolkit's `/bin/sh -c ./entry.sh ...`), which execs dsmil_train; on
# another host it starts over ssh, without the image's ENV: entry.sh supplies the setting.
lazily locks env -u HDF5_USE_FILE_LOCKING PATH="$BUILD/train:$PATH" scripts/sagemaker/entry.sh "${LOCKED[@]:1}" \
  --model-dir "$WORK/l2/m" --output-dir "$WORK/l2/o" > "$WORK/locks.log" 2>&1 ||
  { cat "$WORK/locks.log"; fail "entry.sh without HDF5_USE_FILE_LOCKING in its environment did not train"; }
[ "$(stat_of locks flocks)" = 0 ] || fail "entry.sh's dsmil_train took HDF5 file locks"
# What the images set (and the Processing job's environment, checked in sagemaker_launch.sh).
for f in scripts/sagemaker/Dockerfile scripts/sagemaker/Dockerfile.cuda; do
  grep -Eq '^ENV .*[[:space:]]HDF5_USE_FILE_LOCKING=FALSE( |$)' "$f" || fail "$f does not set HDF5_USE_FILE_LOCKING"
done
echo "fastfile: all checks passed"
