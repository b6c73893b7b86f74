"""One plain log line per epoch, so that a log file shows progress while a run is going.

The progress bar draws on terminals; a SLURM ``.out`` file, ``nohup`` or ``| tee`` gets nothing
from it until the end. This callback writes, through ``logging`` (hence into ``train.log`` and
the console), the epoch, the step, every training loss term, the validation loss and mIoU when
the epoch was validated, and the epoch's and the run's wall time.

Epochs are counted as people count them, from 1 to ``max_epochs`` (``epoch 3/3`` is the last);
the files (metrics.csv, results.json, checkpoints) keep Lightning's count from 0.
"""

from __future__ import annotations

import logging
import time

import pytorch_lightning as pl

from lovaszseg.module import SegmentationModule
from lovaszseg.runs.contract import best_and_final

log = logging.getLogger(__name__)


class EpochLog(pl.Callback):
    def __init__(self) -> None:
        self._epoch_started_at: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_started_at = time.monotonic()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            log.info(epoch_line(trainer, pl_module, self._epoch_started_at))


def epoch_line(trainer: pl.Trainer, module: SegmentationModule, started_at: float | None) -> str:
    """``epoch 3/10 step 120 | train/loss 0.41 (lovasz_hinge 0.31, bce 0.51) | val/mIoU ...``,
    the epochs counted from 1 (Lightning's ``current_epoch`` 2 is the third)."""
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    planned = trainer.max_epochs
    of_planned = f"/{planned}" if planned is not None and planned > 0 else ""  # -1: no limit
    parts = [f"epoch {trainer.current_epoch + 1}{of_planned} step {trainer.global_step}"]
    if "train/loss" in metrics:
        terms = [
            f"{name.removeprefix('train/loss_')} {value:.4f}"
            for name, value in metrics.items()
            if name.startswith("train/loss_")
        ]
        parts.append(f"train/loss {metrics['train/loss']:.4f} ({', '.join(terms)})")
    history = module.history
    if history and history[-1]["epoch"] == trainer.current_epoch:
        validated = [
            f"{name} {metrics[name]:.4f}" for name in ("val/loss", "val/mIoU") if name in metrics
        ]
        best, _ = best_and_final(history)
        if best is not None:
            validated.append(f"best {best['val/mIoU']:.4f} @ epoch {best['epoch'] + 1}")
        parts.append(" ".join(validated))
    epoch_s = "" if started_at is None else f"epoch {time.monotonic() - started_at:.1f} s, "
    parts.append(f"{epoch_s}run {module.fit_time_s():.1f} s")
    return " | ".join(parts)
