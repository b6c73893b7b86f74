"""Helpers for the subprocess tests: the fast overrides and readers for a run's outputs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Small synthetic datasets (generated once per session by the first run that needs them) and the
# debug preset: every run finishes in seconds of compute.
FAST = ("debug=fast", "data.synthetic.num_train=8", "data.synthetic.num_val=4")


def run_dirs(root: Path, task: str = "train") -> list[Path]:
    """Single-run output directories under ``root/outputs/<task>``, oldest first."""
    return sorted(p for p in (root / "outputs" / task).glob("*") if p.is_dir())


def sweep_jobs(root: Path) -> list[Path]:
    """The job directories (``<num>_<overrides>``) of the one multirun under
    ``root/multirun/train`` (not .submitit)."""
    (sweep,) = (root / "multirun" / "train").iterdir()
    jobs = (p for p in sweep.iterdir() if p.is_dir() and p.name.split("_")[0].isdigit())
    return sorted(jobs, key=lambda p: int(p.name.split("_")[0]))


def results(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text())


def metric_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def epochs_with(rows: list[dict[str, str]], column: str) -> list[int]:
    """Epochs (sorted, unique) in which ``column`` was logged."""
    return sorted({int(r["epoch"]) for r in rows if r.get(column) and r.get("epoch")})


def epoch_finished(root: Path, epoch: int) -> bool:
    """The epoch's checkpoint is saved and its training row is in metrics.csv (a real crash
    between those two moments loses that one row; the test kills after both)."""
    for run in root.glob("outputs/train/*"):
        if (run / "checkpoints" / "last.ckpt").is_file() and (run / "metrics.csv").is_file():
            return epoch in epochs_with(metric_rows(run), "train/loss")
    return False


def start_training(data_dir: Path, cwd: Path, *overrides: str) -> subprocess.Popen:
    """``python -m lovaszseg.train`` with the fast overrides, in the background."""
    command = [sys.executable, "-m", "lovaszseg.train", *FAST, f"paths.data_dir={data_dir}"]
    env = os.environ | {"NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
    return subprocess.Popen(
        [*command, *overrides],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def signal_after_epoch(proc: subprocess.Popen, root: Path, epoch: int, signum: int) -> int:
    """Send ``signum`` to a background run once ``epoch`` is finished; return its exit status."""
    try:
        deadline = time.monotonic() + 240
        while not epoch_finished(root, epoch):
            assert proc.poll() is None, f"training ended before epoch {epoch} was logged"
            assert time.monotonic() < deadline, f"epoch {epoch} not finished within 240 s"
            time.sleep(0.05)
        proc.send_signal(signum)
        return proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
