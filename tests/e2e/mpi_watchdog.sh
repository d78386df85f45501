#!/usr/bin/env bash
# The MPI watchdog: a rank that hangs (SIGSTOP: alive, holding its connections, never arriving) used to
# block the other in MPI_Allreduce forever. With --collective-timeout S the waiting rank ends the job
# after S seconds (plus a few seconds asking the ranks where they are), with an error naming the rank that
# did not arrive, and mpirun exits non-zero.
#   usage: mpi_watchdog.sh BUILD_DIR MPIRUN
set -euo pipefail
BUILD=$1
MPIRUN=("$2" --oversubscribe --allow-run-as-root -np 2)
source "$(dirname "$0")/lib.sh"
STOPPED=""  # the SIGSTOPped rank, killed at exit too
trap 'if [ -n "$STOPPED" ]; then kill -9 "$STOPPED" 2> /dev/null || true; fi; e2e_cleanup' EXIT
source "$(dirname "$0")/../../scripts/mpi_ranks.sh"

"$BUILD/bench/dsmil_make_bags" --out "$WORK/train" --bags 40 --dim 16 --seed 1 --task-seed 3 > /dev/null
TIMEOUT=10
"${MPIRUN[@]}" "$BUILD/train/dsmil_train" --train "$WORK/train" --epochs 100000 --stop-epochs 100000 --threads 1 \
  --collective-timeout $TIMEOUT --model-dir "$WORK/m" --output-dir "$WORK/o" > "$WORK/job.log" 2>&1 &
JOB=$!
for _ in $(seq 600); do  # until both ranks are in the training loop (the first epoch's metric line)
  if grep -q '^\[metrics\] fold=0 epoch=1 ' "$WORK/job.log"; then break; fi
  sleep 0.1
done
grep -q '^\[metrics\] fold=0 epoch=1 ' "$WORK/job.log" || { cat "$WORK/job.log"; fail "the job did not start"; }
mapfile -t RANKS < <(ranks_of "$JOB")
[ "${#RANKS[@]}" = 2 ] || fail "expected 2 dsmil_train children of mpirun, found ${#RANKS[@]}"
STOPPED=${RANKS[1]}
STOPPED_RANK=$(tr '\0' '\n' < "/proc/$STOPPED/environ" | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
OTHER_RANK=$((1 - STOPPED_RANK))
kill -STOP "$STOPPED"
STOPPED_AT=$SECONDS
while kill -0 "$JOB" 2> /dev/null; do
  [ $((SECONDS - STOPPED_AT)) -lt 90 ] || { cat "$WORK/job.log"; fail "mpirun still running 90 s after rank $STOPPED_RANK was stopped"; }
  sleep 0.2
done
ENDED=$((SECONDS - STOPPED_AT))
if wait "$JOB"; then fail "mpirun exited 0 after a rank hung"; fi
JOB=""
[ "$ENDED" -ge "$TIMEOUT" ] || fail "the job ended after ${ENDED} s, before the ${TIMEOUT} s timeout"
grep -q "^dsmil_train: error: rank $OTHER_RANK: 'MPI_[A-Za-z]*': collective #[0-9]* did not complete within $TIMEOUT s (--collective-timeout): rank(s) $STOPPED_RANK did not arrive" "$WORK/job.log" ||
  { cat "$WORK/job.log"; fail "no error naming rank $STOPPED_RANK"; }
grep '^dsmil_train: error:' "$WORK/job.log"
echo "mpi_watchdog: all checks passed (rank $STOPPED_RANK stopped; the job ended ${ENDED} s later)"
