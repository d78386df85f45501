#!/usr/bin/env bash
# The project's Python tools in their own virtual environment (default .venv-sagemaker): SageMaker's
# training toolkit (`train`, which local_job.sh runs) and TensorBoard (whose reader checks our event files).
# Idempotent: reuses the environment when both are installed. Prints the environment's path.
#   VENV  where the environment goes
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-$PWD/.venv-sagemaker}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sagemaker_training, tensorboard' 2> /dev/null; then
  if ! python3 -m venv --help > /dev/null 2>&1 || ! command -v gcc > /dev/null; then
    scripts/install_deps.sh > /dev/null
  fi
  python3 -m venv "$VENV" >&2
  # sagemaker-training builds a small C extension (the gethostname shim) at install time.
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "sagemaker-training==5.1.4" "tensorboard==2.21.0" >&2
fi
echo "$VENV"
