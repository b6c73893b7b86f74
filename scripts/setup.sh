#!/usr/bin/env bash
# Creates .venv and installs lovaszseg with its dev extra; a no-op when nothing it depends on
# changed (pyproject.toml and the PyTorch index below).
#
# PYTHON picks the interpreter the venv is made from (default python3; 3.11 or newer).
# LOVASZSEG_TORCH_INDEX installs torch and torchvision from another package index first, e.g.
# PyTorch's CPU builds, which leave out the several GB of CUDA libraries the default build
# brings on Linux:
#   LOVASZSEG_TORCH_INDEX=https://download.pytorch.org/whl/cpu bash scripts/setup.sh
# Unset (the default), everything comes from PyPI. It acts on a new venv (remove .venv first): pip
# keeps a torch that is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${LOVASZSEG_VENV:-.venv}
python=${PYTHON:-python3}
torch_index=${LOVASZSEG_TORCH_INDEX:-}
stamp="$venv/.lovaszseg-installed"

if [ ! -x "$venv/bin/python" ]; then
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    found=$("$python" --version 2>&1 || echo "no interpreter")
    echo "setup: lovaszseg needs Python 3.11 or newer; PYTHON=$python gives: $found." >&2
    echo "setup: point PYTHON at a newer one, e.g. PYTHON=python3.11 bash scripts/setup.sh" >&2
    exit 1
  fi
  "$python" -m venv "$venv"
fi

wanted=$(cat pyproject.toml)
if [ -n "$torch_index" ]; then
  wanted+=$'\n'"# LOVASZSEG_TORCH_INDEX=$torch_index"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  if [ -n "$torch_index" ]; then
    if ! "$venv/bin/python" -m pip install --quiet --index-url "$torch_index" torch torchvision; then
      echo "setup: could not install torch and torchvision from LOVASZSEG_TORCH_INDEX=$torch_index;" \
        "check the address, or unset LOVASZSEG_TORCH_INDEX to install the default build from PyPI" >&2
      exit 1
    fi
  fi
  "$venv/bin/python" -m pip install --quiet -e ".[dev]"
  printf '%s\n' "$wanted" >"$stamp"
fi
