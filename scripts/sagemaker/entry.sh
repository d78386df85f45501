#!/bin/sh
# dsmil's container entry point (the images' ENTRYPOINT) and the program SageMaker's training toolkit runs
# (sagemaker_program) in script mode.
#  - `entry.sh train`: SageMaker starts a container as `docker run IMAGE train`. When the job names a
#    sagemaker_program (script mode: the estimator's entry_point, needed for the mpi distribution) and the
#    image has the toolkit, run the toolkit, which runs the program with the hyperparameters as arguments
#    (under mpirun for the mpi distribution). Otherwise exec dsmil_train, which reads /opt/ml itself and,
#    being PID 1, gets the SIGTERM of a stop or spot reclaim.
#  - anything else (the toolkit's call, a user's): exec dsmil_train with these arguments.
# In script mode this shell stays PID 1: the toolkit does not forward SIGTERM, and mpirun cannot reach the
# ranks either (each rank is `/bin/sh -c ./entry.sh ...`, whose shell would die and leave dsmil_train
# running). So on SIGTERM/SIGINT this shell signals the dsmil_train processes under the toolkit on this host
# (on every host: each container gets the signal); the ranks agree to stop at the same step, checkpoint and
# exit 143, and the exit status of the toolkit is this script's.
TOOLKIT=${DSMIL_TOOLKIT_TRAIN:-/opt/dsmil/.venv-sagemaker/bin/train}
# Channels are read-only, and FastFile's mount (or another network file system) need not support HDF5's
# file locks. The images set this too, but a rank on another host is started over ssh without the image's
# environment (the toolkit's mpirun passes PATH and its own variables only), and every rank runs this script.
export HDF5_USE_FILE_LOCKING="${HDF5_USE_FILE_LOCKING:-FALSE}"
CONFIG=${SAGEMAKER_BASE_DIR:-/opt/ml}/input/config

# The PIDs of the dsmil_train processes descending from PID $1, from /proc/*/stat ("pid (comm) state ppid").
ranks_under() {
  cat /proc/[0-9]*/stat 2> /dev/null | awk -v root="$1" '
    { o = index($0, "("); c = length($0); while (c > o && substr($0, c, 1) != ")") c--
      pid = substr($0, 1, o - 2); split(substr($0, c + 2), f, " ")
      parent[pid] = f[2]; name[pid] = substr($0, o + 1, c - o - 1) }
    END { for (p in parent) if (name[p] == "dsmil_train") {
            q = p; while ((q in parent) && q != root && q > 1) q = parent[q]
            if (q == root) print p } }'
}

forward() {
  pids=$(ranks_under "$child" | tr '\n' ' ')
  echo "[entry] $1: forwarding to dsmil_train process(es) ${pids:-(none yet)}" >&2
  [ -z "$pids" ] || kill -s "$1" $pids 2> /dev/null
}

if [ "${1:-}" = train ]; then
  shift
  if [ -x "$TOOLKIT" ] && grep -q '"sagemaker_program"' "$CONFIG/hyperparameters.json" 2> /dev/null; then
    "$TOOLKIT" &
    child=$!
    trap 'forward TERM' TERM
    trap 'forward INT' INT
    # `wait` returns early when a trapped signal arrives: wait again until the toolkit itself has ended.
    while :; do
      wait "$child"
      status=$?
      kill -0 "$child" 2> /dev/null || exit "$status"
    done
  fi
fi
exec dsmil_train "$@"
