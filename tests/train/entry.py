"""Helpers for the subprocess tests: the fast overrides and readers for a run's outputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

# Small synthetic datasets (generated once per session by the first run that needs them) and the
# debug preset: every run finishes in seconds of compute.
FAST = ("debug=fast", "data.synthetic.num_train=8", "data.synthetic.num_val=4")


def run_dirs(root: Path, task: str = "train") -> list[Path]:
    """Single-run output directories under ``root/outputs/<task>``, oldest first."""
    return sorted(p for p in (root / "outputs" / task).glob("*") if p.is_dir())


def sweep_jobs(root: Path) -> list[Path]:
    """The job directories (``<num>_<overrides>``) of the one multirun under ``root/multirun/train``."""
    (sweep,) = (root / "multirun" / "train").iterdir()
    return sorted(
        (p for p in sweep.iterdir() if p.is_dir()), key=lambda p: int(p.name.split("_")[0])
    )


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
