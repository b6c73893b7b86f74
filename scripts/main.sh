#!/usr/bin/env bash
# The main job: set up (if needed), then run it. Extra arguments go to the entry point.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv=${LOVASZSEG_VENV:-.venv}
export NO_ALBUMENTATIONS_UPDATE=1
exec "$venv/bin/python" -m lovaszseg.train "$@"
