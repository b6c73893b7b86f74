#!/usr/bin/env bash
# Creates .venv and installs lovaszseg with its dev extra; a no-op when pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${LOVASZSEG_VENV:-.venv}
stamp="$venv/.lovaszseg-installed"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ] || ! cmp -s pyproject.toml "$stamp"; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e ".[dev]"
  cp pyproject.toml "$stamp"
fi
