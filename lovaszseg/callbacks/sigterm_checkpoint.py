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

Under submitit (``hydra/launcher=slurm``) a job nearing its time limit, or preempted, gets
submitit's signal (SIGUSR2) first: its handler requeues the job and then exits rank zero at once,
wherever it is, in the middle of a collective or a checkpoint save. The other ranks then fail in
their next collective, and the work since the last epoch's ``last.ckpt`` is lost. While training
runs, that exit is turned into the same stop as SIGTERM (which SLURM sends every task on the
requeue anyway): submitit still requeues, every rank saves ``last.ckpt`` at the next batch end.
A job submitit will not requeue (timed out ``max_num_timeout`` times) stops the same way, before
its time limit, with the reason in the log, instead of failing on the spot as a bug.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from types import FrameType

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lovaszseg.runs.atomic import atomic_path

log = logging.getLogger(__name__)

Handler = Callable[[int, FrameType | None], object]


def submitit_requeue_handler() -> tuple[int, Handler] | None:
    """The signal submitit's requeue handler is installed on, and that handler; ``None`` outside
    a submitit job (submitit is loaded only there, so this never imports it)."""
    job_environment = sys.modules.get("submitit.core.job_environment")
    if job_environment is None:
        return None
    # submitit's signal is SIGUSR2 unless its SUBMITIT_PREEMPT_SIGNAL names another
    signum = getattr(job_environment.JobEnvironment, "_usr_sig", lambda: signal.SIGUSR2)()
    handler = signal.getsignal(signum)
    if not isinstance(getattr(handler, "__self__", None), job_environment.SignalHandler):
        return None
    return signum, handler


class NotRequeued(SIGTERMException):
    """Stopped with ``last.ckpt`` because the time limit nears and submitit will not requeue."""


class CheckpointOnSigterm(pl.Callback):
    """On SIGTERM during fit, save ``<dirpath>/<filename>.ckpt`` at the next batch end and stop."""

    def __init__(self, dirpath: str | Path, filename: str = "last") -> None:
        self.target = Path(dirpath) / f"{filename}.ckpt"
        self.received = False
        self.not_requeued: str | None = None  # submitit's reason, when it refused to requeue
        self._submitit: tuple[int, Handler] | None = None

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.received = True

    def _requeue_then_stop(self, signum: int, frame: FrameType | None) -> None:
        """submitit's handler (it requeues the job on rank zero), without its exit or its error
        when it will not requeue: stop at the next batch end instead."""
        assert self._submitit is not None
        try:
            self._submitit[1](signum, frame)
        except SystemExit:
            self.received = True
        except Exception as refused:  # submitit's UncompletedJobError, with its reason
            self.not_requeued = str(refused)
            self.received = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.received = False
        self.not_requeued = None
        signal.signal(signal.SIGTERM, self._note)
        self._submitit = submitit_requeue_handler()
        if self._submitit is not None:
            signal.signal(self._submitit[0], self._requeue_then_stop)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._submitit is not None:
            signal.signal(*self._submitit)
            self._submitit = None

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
        # submitit decides on rank zero; every rank must end the job the same way
        not_requeued = trainer.strategy.broadcast(self.not_requeued, src=0)
        if not_requeued:
            raise NotRequeued(
                f"submitit did not requeue the job: {not_requeued} "
                f"(stopped with {self.target} at epoch {trainer.current_epoch}, "
                f"step {trainer.global_step})"
            )
        raise SIGTERMException("SIGTERM: stopped after saving last.ckpt")
