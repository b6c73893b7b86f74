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

Under submitit (``hydra/launcher=slurm``) a job nearing its time limit (``signal_delay_s``
before it), or preempted, gets submitit's signal (SIGUSR2). submitit's handler requeues the job
at once, which leaves the tasks only the cluster's ``KillWait`` (30 s by default) before SIGKILL,
and then exits rank zero wherever it is: inside a collective (the other ranks then fail in it) or
a checkpoint save, losing the work since the last epoch's ``last.ckpt``. Here the signal is only
noted, like SIGTERM: every rank saves ``last.ckpt`` at the next batch end, and only then is
submitit's handler called (it requeues the job, or says why it will not) and the ranks stop. No
batch end within ``requeue_within_s`` (a long validation) requeues the job without the save, as
submitit would. DataLoader workers, which SLURM signals too, leave it to the training process.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
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
    """On SIGTERM during fit, save ``<dirpath>/<filename>.ckpt`` at the next batch end and stop;
    in a submitit job, on its signal too, and then let submitit requeue the job."""

    def __init__(
        self, dirpath: str | Path, filename: str = "last", requeue_within_s: float = 60.0
    ) -> None:
        self.target = Path(dirpath) / f"{filename}.ckpt"
        self.requeue_within_s = requeue_within_s
        self.received = False
        self.not_requeued: str | None = None  # submitit's reason, when it refused to requeue
        self._submitit: tuple[int, Handler] | None = None  # submitit's signal and handler
        self._active = False
        self._training_pid: int | None = None
        self._submitit_signalled = False
        self._requeue_asked = False
        # made in setup: ddp_spawn pickles the callbacks to its processes, and a lock does not pickle
        self._requeue_lock: threading.Lock | None = None
        self._requeue_timer: threading.Timer | None = None

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.received = True

    def _note_submitit_signal(self, signum: int, frame: FrameType | None) -> None:
        assert self._submitit is not None
        if not self._active:  # outside the fit (Lightning may put this handler back): submitit's
            self._submitit[1](signum, frame)
            return
        if os.getpid() != self._training_pid:
            return  # a DataLoader worker forked from the training process
        self.received = True
        if not self._submitit_signalled:
            self._submitit_signalled = True
            self._requeue_timer = threading.Timer(self.requeue_within_s, self._requeue)
            self._requeue_timer.daemon = True
            self._requeue_timer.start()

    def _requeue(self) -> None:
        """submitit's handler, once: on rank zero it requeues the job (and would exit: not here)
        or raises why it will not; on the other ranks it only logs."""
        assert self._requeue_lock is not None
        with self._requeue_lock:
            if self._requeue_asked or not self._active:
                return
            self._requeue_asked = True
            signum, handler = self._submitit
            try:
                handler(signum, None)
            except SystemExit:
                pass
            except Exception as refused:  # submitit's UncompletedJobError, with its reason
                self.not_requeued = str(refused)

    def _cause(self) -> str:
        if self._submitit_signalled:
            assert self._submitit is not None
            return f"{signal.Signals(self._submitit[0]).name} from submitit"
        return "SIGTERM"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # before the DataLoader workers are forked, so that they inherit the pid check
        if stage != "fit":
            return
        self.received = False
        self.not_requeued = None
        self._submitit_signalled = self._requeue_asked = False
        self._requeue_lock = threading.Lock()
        self._submitit = submitit_requeue_handler() or self._submitit  # a second fit: kept
        if self._submitit is not None:
            self._active = True
            self._training_pid = os.getpid()
            signal.signal(self._submitit[0], self._note_submitit_signal)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # here, not in setup: Lightning sets its own SIGTERM handler between the two
        signal.signal(signal.SIGTERM, self._note)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._requeue_timer is not None:
            self._requeue_timer.cancel()
            self._requeue_timer = None
        if self._active:
            self._active = False
            signal.signal(*self._submitit)

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
                "%s at epoch %d, step %d: saved %s; resume with ckpt_path=last or auto_resume=true",
                self._cause(),
                trainer.current_epoch,
                trainer.global_step,
                self.target,
            )
        if self._submitit_signalled:
            self._requeue()  # now that last.ckpt is saved
        # submitit decides on rank zero; every rank must end the job the same way
        not_requeued = trainer.strategy.broadcast(self.not_requeued, src=0)
        if not_requeued:
            raise NotRequeued(
                f"submitit did not requeue the job: {not_requeued} "
                f"(stopped with {self.target} at epoch {trainer.current_epoch}, "
                f"step {trainer.global_step})"
            )
        raise SIGTERMException("SIGTERM: stopped after saving last.ckpt")
