#!/usr/bin/env bash
# The project's Python tools in their own virtual environment (default .venv-sagemaker): SageMaker's
# training toolkit (`train`, which local_job.sh runs), TensorBoard (whose reader checks our event files) and
# what the launchers need (scripts/sagemaker/requirements.txt: the pinned SageMaker Python SDK), all in one
# resolution, so that tests running side by side never see it change under them. --toolkit-only (the
# images) leaves the SDK out. Idempotent: reuses the environment when what is asked for is installed, and
# serialises concurrent calls. Prints the environment's path.
#   VENV  where the environment goes
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-$PWD/.venv-sagemaker}
PACKAGES=("sagemaker-training==5.1.4" "tensorboard==2.21.0")
CHECK="import sagemaker_training, tensorboard"
if [ "${1:-}" != --toolkit-only ]; then
  PACKAGES+=(-r scripts/sagemaker/requirements.txt)
  # The pinned SDK version, not any: launch.py is tested against that one.
  PINNED=$(sed -n 's/^sagemaker==//p' scripts/sagemaker/requirements.txt)
  CHECK="$CHECK; import importlib.metadata as m; assert m.version('sagemaker') == '$PINNED'"
fi
mkdir -p "$(dirname "$VENV")"
exec 9> "$VENV.lock"
flock 9
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "$CHECK" 2> /dev/null; then
  if ! python3 -m venv --help > /dev/null 2>&1 || ! command -v gcc > /dev/null; then
    scripts/install_deps.sh > /dev/null
  fi
  python3 -m venv "$VENV" >&2
  # One resolution for everything: sagemaker-training builds a small C extension (the gethostname shim) at
  # install time.
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PACKAGES[@]}" >&2
fi
echo "$VENV"
