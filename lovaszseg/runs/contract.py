"""The run contract: what a run's ``results.json`` is called, what it holds, and how it is read.

Training (a callback), eval, train's summary, the sweepers and the reports all meet at this one
file, so its name, its keys, its statuses and the metric names inside it are defined here once;
a writer and a reader that disagree on a spelling would otherwise fail silently (a report that
finds no ``val/mIoU`` shows an empty table, not an error). Free of Lightning, so a report can be
made on a machine that only has the runs' files.

Schema (every key optional except ``status``; absent values are ``null``)::

    task, data, loss, model, experiment   the run's group choices (eval: task, data, ckpt_path)
    seed, init_from, init_from_loss       the seed; the checkpoint a fine-tune started from
    epochs, world_size, wall_time_s       the planned epochs, the processes, the fit's duration
    status                                one of STATUSES
    best, final                           epoch records: {epoch, val/mIoU, per_class_iou}
    error                                 "<ExceptionType>: <message>" when failed/interrupted
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lovaszseg.runs.atomic import write_json_atomic

RESULTS_FILE = "results.json"

RUNNING = "running"
"""Rewritten after every validation while the run trains (or when it was killed without notice)."""
COMPLETED = "completed"
INTERRUPTED = "interrupted"
"""Stopped from outside (Ctrl-C, SIGTERM, a job manager's exit): resumable, not a failure."""
FAILED = "failed"
"""The run's own error: a refused configuration, missing data, a non-finite loss, a bug."""
STATUSES = (RUNNING, COMPLETED, INTERRUPTED, FAILED)

VAL_MIOU = "val/mIoU"
VAL_LOSS = "val/loss"
IOU_PREFIX = "val/IoU_"
"""Per-class IoU keys are ``val/IoU_<class>``; extra zones (``val/IoU_road_thin``) share it."""

EPOCH = "epoch"
PER_CLASS_IOU = "per_class_iou"
BEST = "best"
FINAL = "final"
STATUS = "status"


def class_iou_key(class_name: str) -> str:
    """``val/IoU_<class>`` without spaces, so it is a valid CSV / W&B column name."""
    return IOU_PREFIX + class_name.strip().replace(" ", "_")


def class_of_iou_key(key: str) -> str | None:
    """The class (or zone) of a ``val/IoU_<name>`` key; None for any other key."""
    return key.removeprefix(IOU_PREFIX) if key.startswith(IOU_PREFIX) else None


def results_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / RESULTS_FILE


def read_results(path: str | Path) -> dict[str, Any]:
    """The results of a run (``path`` is the file or the run's folder), checked to be a JSON
    object whose status, if any, is one of STATUSES."""
    path = Path(path)
    if path.is_dir():
        path = results_path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ValueError(f"no results file at {path}") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read {RESULTS_FILE} ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    if data.get(STATUS) is not None and data[STATUS] not in STATUSES:
        raise ValueError(f"{path}: status {data[STATUS]!r} is not one of {', '.join(STATUSES)}")
    return data


def write_results(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Replace ``path`` atomically, so a reader (a report, a sweeper) never sees half a file."""
    if payload.get(STATUS) not in STATUSES:
        raise ValueError(
            f"{path}: status {payload.get(STATUS)!r} is not one of {', '.join(STATUSES)}"
        )
    write_json_atomic(path, payload)


def best_and_final(history: Sequence[Mapping[str, Any]]) -> tuple[dict | None, dict | None]:
    """Best epoch by ``val/mIoU`` (earliest on ties) and the last validated epoch."""
    scored = [h for h in history if h.get(VAL_MIOU) is not None]
    if not scored:
        return None, (dict(history[-1]) if history else None)
    best = max(scored, key=lambda h: (h[VAL_MIOU], -h[EPOCH]))
    return dict(best), dict(history[-1])


def loss_of_checkpoint(ckpt: str | Path) -> str:
    """The loss of the run that wrote ``ckpt`` (``<run>/checkpoints/x.ckpt``), or "checkpoint"
    when that run's results cannot be read (a checkpoint copied away from its run)."""
    ckpt = Path(ckpt)
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    try:
        return str(read_results(run_dir)["loss"])
    except (ValueError, KeyError):
        return "checkpoint"
