#!/usr/bin/env bash
# The test command: set up (if needed), lint, run the suite. Extra arguments go to pytest:
# `bash scripts/test.sh -m "not slow"` is the fast lane (tests/conftest.py says what is slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv=${LOVASZSEG_VENV:-.venv}
export NO_ALBUMENTATIONS_UPDATE=1 WANDB_MODE=disabled
"$venv/bin/ruff" check .
"$venv/bin/python" -m pytest "$@"
