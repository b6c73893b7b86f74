#!/usr/bin/env bash
# The loss API fuzzed far beyond CI's 1,500 examples: random (not derandomised) examples,
# LOVASZSEG_FUZZ_EXAMPLES per test (default 25,000; three tests). Extra arguments go to pytest.
#
#   bash scripts/fuzz.sh                                  # 3 x 25,000 examples
#   LOVASZSEG_FUZZ_EXAMPLES=2000 bash scripts/fuzz.sh     # a shorter run
#   LOVASZSEG_SANITIZE=1 ... bash scripts/sanitize.sh tests/losses/test_fuzz.py   # under ASan
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${LOVASZSEG_VENV:-.venv}
export NO_ALBUMENTATIONS_UPDATE=1 WANDB_MODE=disabled LOVASZSEG_FUZZ=deep
export LOVASZSEG_FUZZ_EXAMPLES=${LOVASZSEG_FUZZ_EXAMPLES:-25000}
"$venv/bin/python" -m pytest -q -p no:cacheprovider --hypothesis-show-statistics \
  tests/losses/test_fuzz.py "$@"
