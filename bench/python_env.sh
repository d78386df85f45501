#!/usr/bin/env bash
# The Python environment of bench/reference_train.py (the authors' loop, re-written): PyPI's torch, h5py and
# scikit-learn in a virtual environment. The venv is scripts/build_cuda.sh's (TORCH_VENV, default
# <repo>/.venv-torch), so a machine that built the CUDA variant downloads torch once. Idempotent: reuses
# the environment when the three import. Prints the environment's path.
#   TORCH_VENV  where the environment goes
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TORCH_VENV:-$PWD/.venv-torch}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -W ignore -c 'import torch, h5py, sklearn' 2> /dev/null; then
  if ! python3 -m venv --help > /dev/null 2>&1; then
    scripts/install_deps.sh > /dev/null
  fi
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check torch h5py scikit-learn >&2
fi
echo "$VENV"
