"""Stop cleanly on SIGTERM, the signal SLURM (preemption, requeue) and Kubernetes send first.

Lightning turns a SIGTERM into a ``SIGTERMException`` at the next batch boundary, on every rank
together. This callback then saves ``last.ckpt`` (through a temporary file and a rename, so a
SIGKILL during the save leaves the previous one whole), and a resume (``ckpt_path=last``, or
``auto_resume=true`` when SLURM requeues the job) loses at most the batch that was running.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class CheckpointOnSigterm(pl.Callback):
    """On SIGTERM during fit, save ``<dirpath>/<filename>.ckpt`` from the current state."""

    def __init__(self, dirpath: str | Path, filename: str = "last") -> None:
        self.target = Path(dirpath) / f"{filename}.ckpt"

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        partial = self.target.with_name(f".{self.target.name}.sigterm")
        trainer.save_checkpoint(partial)
        if trainer.is_global_zero:
            os.replace(partial, self.target)
            log.warning(
                "SIGTERM at epoch %d, step %d: saved %s; resume with ckpt_path=last or "
                "auto_resume=true",
                trainer.current_epoch,
                trainer.global_step,
                self.target,
            )
