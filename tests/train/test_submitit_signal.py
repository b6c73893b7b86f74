"""submitit's time-out signal during training: noted like SIGTERM, so every rank saves
``last.ckpt`` at the next batch end, and only then submitit's handler requeues the job (or says
why it will not), instead of requeueing at once (the cluster's KillWait then bounds the save) and
exiting rank 0 on the spot.

submitit's own handler runs here (``SignalHandler`` with a recorded requeue); the whole path on a
real SLURM is ``test_slurm_time_limit.py``.
"""

from __future__ import annotations

import os
import pickle
import signal
import time
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lovaszseg.callbacks.sigterm_checkpoint import CheckpointOnSigterm, NotRequeued

submitit = pytest.importorskip("submitit")
from submitit.core.job_environment import SignalHandler  # noqa: E402
from submitit.core.utils import JobPaths  # noqa: E402


class Resumable:
    """What hydra's submitit launcher submits: a callable whose ``checkpoint`` resubmits it."""

    def __call__(self) -> None: ...

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(Resumable())


@pytest.fixture
def submitit_job(tmp_path):
    """``install(timeouts_left)``: submitit's handler on SIGUSR2 as in rank 0 of a job past its
    time; ``requeues`` gets, for each requeue, whether ``tmp_path/last.ckpt`` existed then."""
    previous = signal.getsignal(signal.SIGUSR2), signal.getsignal(signal.SIGTERM)
    requeues: list[bool] = []

    def install(timeouts_left: int) -> SignalHandler:
        delayed = submitit.helpers.DelayedSubmission(Resumable())
        delayed.set_timeout(10, timeouts_left)  # a 10-minute limit: any signal is a time-out

        def requeue(countdown: int) -> None:
            requeues.append((tmp_path / "last.ckpt").exists())

        env = SimpleNamespace(global_rank=0, _requeue=requeue)
        handler = SignalHandler(env, JobPaths(tmp_path, job_id="7"), delayed)
        signal.signal(signal.SIGUSR2, handler.checkpoint_and_try_requeue)
        return handler

    yield install, requeues
    signal.signal(signal.SIGUSR2, previous[0])
    signal.signal(signal.SIGTERM, previous[1])


def fit_setup(callback: CheckpointOnSigterm) -> None:
    callback.setup(None, None, "fit")
    callback.on_train_start(None, None)


def test_the_signal_is_noted_and_submitit_requeues_when_asked_once(submitit_job, tmp_path):
    install, requeues = submitit_job
    handler = install(timeouts_left=2)
    callback = CheckpointOnSigterm(tmp_path)
    fit_setup(callback)

    os.kill(os.getpid(), signal.SIGUSR2)  # submitit's handler would requeue and exit here
    assert callback.received and requeues == []
    callback._requeue()
    callback._requeue()
    os.kill(os.getpid(), signal.SIGUSR2)
    assert requeues == [False] and callback.not_requeued is None
    resubmitted = pickle.loads(JobPaths(tmp_path, job_id="7").submitted_pickle.read_bytes())
    assert isinstance(resubmitted.function, Resumable)

    callback.teardown(None, None, "fit")
    assert signal.getsignal(signal.SIGUSR2) == handler.checkpoint_and_try_requeue
    # Lightning may restore this callback's handler after the fit: it is submitit's again
    with pytest.raises(SystemExit):
        callback._note_submitit_signal(signal.SIGUSR2, None)
    assert requeues == [False, False]


def test_a_job_out_of_requeues_keeps_submitits_reason(submitit_job, tmp_path):
    install, requeues = submitit_job
    install(timeouts_left=0)
    callback = CheckpointOnSigterm(tmp_path)
    fit_setup(callback)

    os.kill(os.getpid(), signal.SIGUSR2)
    callback._requeue()

    assert requeues == [] and callback.received
    assert "timed-out too many times" in callback.not_requeued


def test_no_batch_end_in_time_still_requeues(submitit_job, tmp_path):
    install, requeues = submitit_job
    install(timeouts_left=2)
    callback = CheckpointOnSigterm(tmp_path, requeue_within_s=0.05)
    fit_setup(callback)

    os.kill(os.getpid(), signal.SIGUSR2)
    deadline = time.monotonic() + 10
    while not requeues and time.monotonic() < deadline:
        time.sleep(0.01)
    callback._requeue()  # the batch end, later: nothing more
    assert requeues == [False]
    callback.teardown(None, None, "fit")


def test_a_dataloader_worker_leaves_the_signal_to_the_training_process(submitit_job, tmp_path):
    install, requeues = submitit_job
    install(timeouts_left=2)
    callback = CheckpointOnSigterm(tmp_path, requeue_within_s=0.05)
    fit_setup(callback)
    callback._training_pid = os.getpid() + 1  # as seen from a process forked after the setup

    os.kill(os.getpid(), signal.SIGUSR2)
    time.sleep(0.2)
    assert not callback.received and requeues == []
    callback.teardown(None, None, "fit")


def test_outside_submitit_the_signal_is_left_alone(tmp_path):
    previous = signal.getsignal(signal.SIGUSR2), signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        callback = CheckpointOnSigterm(tmp_path)
        fit_setup(callback)
        assert signal.getsignal(signal.SIGUSR2) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGTERM)
        assert callback.received
    finally:
        signal.signal(signal.SIGUSR2, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


class Regression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        data = torch.utils.data.TensorDataset(torch.randn(16, 2), torch.randn(16, 1))
        return torch.utils.data.DataLoader(data, batch_size=2)


class SignalAtBatch(pl.Callback):
    def __init__(self, batch: int) -> None:
        self.batch = batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGUSR2)


@pytest.mark.parametrize("timeouts_left", [2, 0], ids=["requeued", "out of requeues"])
def test_training_signalled_by_submitit_saves_that_batch_then_requeues(
    submitit_job, tmp_path, caplog, timeouts_left
):
    install, requeues = submitit_job
    install(timeouts_left)
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[CheckpointOnSigterm(tmp_path), SignalAtBatch(3)],
        default_root_dir=tmp_path,
    )
    with pytest.raises(SIGTERMException) as stop:
        trainer.fit(Regression())
    assert "SIGUSR2 from submitit at epoch 0, step 4: saved" in caplog.text

    # batches 0 to 3 trained: the signal's batch ended and was saved, then the job requeued
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["global_step"] == 4
    assert requeues == ([True] if timeouts_left else [])
    if timeouts_left:
        assert type(stop.value) is SIGTERMException  # the job runs again: nothing to report
    else:  # the job ends: the reason goes to submitit, through lovaszseg.train
        assert isinstance(stop.value, NotRequeued)
        assert "timed-out too many times" in str(stop.value) and "step 4" in str(stop.value)


def test_the_callback_pickles_for_ddp_spawn(tmp_path):
    # ddp_spawn sends the trainer, callbacks and all, to its processes before their setup
    callback = pickle.loads(pickle.dumps(CheckpointOnSigterm(tmp_path, requeue_within_s=5)))
    assert (callback.target, callback.requeue_within_s) == (tmp_path / "last.ckpt", 5)
