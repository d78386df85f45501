#!/bin/sh
# dsmil's container entry point (the images' ENTRYPOINT) and the program SageMaker's training toolkit runs
# (sagemaker_program) in script mode. Every path ends in `exec`, so that dsmil_train itself is the process
# that receives SIGTERM when the job is stopped or its spot instance reclaimed (PID 1 in a container).
#  - `entry.sh train`: SageMaker starts a container as `docker run IMAGE train`. When the job names a
#    sagemaker_program (script mode: the Estimator's entry_point, needed for the mpi distribution) and the
#    image has the toolkit, hand over to the toolkit, which runs the program with the hyperparameters as
#    arguments (and mpirun for the mpi distribution). Otherwise run dsmil_train, which reads /opt/ml itself.
#  - anything else (the toolkit's call, a user's): dsmil_train with these arguments.
TOOLKIT=${DSMIL_TOOLKIT_TRAIN:-/opt/dsmil/.venv-sagemaker/bin/train}
if [ "${1:-}" = train ]; then
  shift
  if [ -x "$TOOLKIT" ] && grep -q '"sagemaker_program"' /opt/ml/input/config/hyperparameters.json 2> /dev/null; then
    exec "$TOOLKIT"
  fi
fi
exec dsmil_train "$@"
