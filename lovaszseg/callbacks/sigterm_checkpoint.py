"""Stop cleanly on SIGTERM, the signal SLURM (preemption, requeue) and Kubernetes send first.

The handler only notes the signal. At the end of every training batch the ranks
agree whether any of them got it — one small all-reduce, the same point on every rank — and
then all of them save ``last.ckpt`` from that batch (Lightning resumes from such a checkpoint
mid-epoch) and stop with Lightning's ``SIGTERMException``, so ``results.json`` says
``interrupted`` and a resume (``ckpt_path=last``, or ``auto_resume=true`` when SLURM requeues
the job) loses at most the batch that was running.

Lightning's own SIGTERM handler is replaced while training runs (its original handlers come
back when the Trainer tears down): it broadcasts from inside the signal handler, which meets
whatever collective the other ranks are in at that moment and can hang a multi-process job
until SLURM kills it.
"""

from __future__ import annotations

import logging
import signal
from contextlib import nullcontext
from pathlib import Path
from types import FrameType

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lovaszseg.runs.atomic import atomic_path

log = logging.getLogger(__name__)


class CheckpointOnSigterm(pl.Callback):
    """On SIGTERM during fit, save ``<dirpath>/<filename>.ckpt`` at the next batch end and stop."""

    def __init__(self, dirpath: str | Path, filename: str = "last") -> None:
        self.target = Path(dirpath) / f"{filename}.ckpt"
        self.received = False

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.received = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.received = False
        signal.signal(signal.SIGTERM, self._note)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if not trainer.strategy.reduce_boolean_decision(self.received, all=False):
            return
        # atomically: a SIGKILL during the save leaves the old last.ckpt whole. Only rank zero
        # writes; the other ranks join the save (and its barrier) without writing anything.
        saving = atomic_path(self.target) if trainer.is_global_zero else nullcontext(self.target)
        with saving as path:
            trainer.save_checkpoint(path)
        if trainer.is_global_zero:
            log.warning(
                "SIGTERM at epoch %d, step %d: saved %s; resume with ckpt_path=last or "
                "auto_resume=true",
                trainer.current_epoch,
                trainer.global_step,
                self.target,
            )
        raise SIGTERMException("SIGTERM: stopped after saving last.ckpt")
