"""The kill-anywhere torture (scripts/torture.py), short form: ten trials, nothing may be lost.

Seven trials SIGKILL a small run at random moments (seeded) and resume it with
``auto_resume=true``; three kill it inside a write (the second ``last.ckpt``, the first
``best.ckpt``, the final ``results.json``). The script checks each trial against an unstopped
reference run: completed, the same weights to the bit in ``last.ckpt`` and ``best.ckpt``, every
epoch's validation in ``metrics.csv``, ``results.json`` completed with the same best and final
epochs, and no temporary file left.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "torture.py"
FAULTS = "last.ckpt:2,best.ckpt:1,results.json:4"


@pytest.mark.slow
def test_ten_runs_killed_anywhere_end_as_the_unstopped_run(tmp_path):
    command = [
        sys.executable,
        str(SCRIPT),
        "--trials=7",
        "--seed=26",
        f"--targeted={FAULTS}",
        f"--workdir={tmp_path / 'torture'}",
        "--jobs=2",
    ]
    env = os.environ | {"NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3000)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert lines[-1] == "10 of 10 trials survived", done.stdout
    for fault in FAULTS.split(","):
        (line,) = [line for line in lines if line.startswith(f"targeted {fault}:")]
        assert f"killed inside write {fault}" in line, line
    killed = [line for line in lines if line.startswith("random") and "SIGKILL at" in line]
    assert len(killed) >= 5, "most random trials must have been killed at least once"
