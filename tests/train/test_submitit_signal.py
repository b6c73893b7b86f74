"""submitit's time-out signal during training: the job is requeued, and training stops at the next
batch end with ``last.ckpt`` (the SIGTERM path) instead of submitit's exit on the spot; a job out
of requeues stops the same way, with submitit's reason logged, instead of failing on the spot.

submitit's own handler runs here (``SignalHandler`` with a recorded requeue); the whole path on a
real SLURM is ``test_slurm_time_limit.py``.
"""

from __future__ import annotations

import os
import pickle
import signal
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lovaszseg.callbacks.sigterm_checkpoint import CheckpointOnSigterm, NotRequeued

submitit = pytest.importorskip("submitit")
from submitit.core.job_environment import SignalHandler  # noqa: E402
from submitit.core.utils import JobPaths, UncompletedJobError  # noqa: E402


class Resumable:
    """What hydra's submitit launcher submits: a callable whose ``checkpoint`` resubmits it."""

    def __call__(self) -> None: ...

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(Resumable())


@pytest.fixture
def submitit_job(tmp_path):
    """submitit's handler on SIGUSR2 as in a job of rank 0 past its time, with ``timeouts_left``
    requeues left; yields the handler and the list of requeues it asked for."""
    previous = signal.getsignal(signal.SIGUSR2), signal.getsignal(signal.SIGTERM)
    requeues: list[int] = []

    def install(timeouts_left: int) -> SignalHandler:
        delayed = submitit.helpers.DelayedSubmission(Resumable())
        delayed.set_timeout(10, timeouts_left)  # a 10-minute limit: any signal is a time-out
        env = SimpleNamespace(global_rank=0, _requeue=requeues.append)
        handler = SignalHandler(env, JobPaths(tmp_path, job_id="7"), delayed)
        signal.signal(signal.SIGUSR2, handler.checkpoint_and_try_requeue)
        return handler

    yield install, requeues
    signal.signal(signal.SIGUSR2, previous[0])
    signal.signal(signal.SIGTERM, previous[1])


def test_the_time_out_signal_requeues_and_stops_at_the_next_batch(submitit_job, tmp_path):
    install, requeues = submitit_job
    handler = install(timeouts_left=2)
    callback = CheckpointOnSigterm(tmp_path)
    callback.on_train_start(None, None)

    os.kill(os.getpid(), signal.SIGUSR2)  # submitit's exit would raise SystemExit here

    assert requeues == [1] and callback.received
    resubmitted = pickle.loads(JobPaths(tmp_path, job_id="7").submitted_pickle.read_bytes())
    assert isinstance(resubmitted.function, Resumable)
    callback.teardown(None, None, "fit")
    assert signal.getsignal(signal.SIGUSR2) == handler.checkpoint_and_try_requeue


def test_a_job_out_of_requeues_stops_at_the_next_batch_with_submitits_reason(
    submitit_job, tmp_path
):
    install, requeues = submitit_job
    handler = install(timeouts_left=0)
    with pytest.raises(UncompletedJobError, match="timed-out too many times"):
        handler.checkpoint_and_try_requeue(signal.SIGUSR2, None)  # submitit's way, on the spot
    callback = CheckpointOnSigterm(tmp_path)
    callback.on_train_start(None, None)

    os.kill(os.getpid(), signal.SIGUSR2)

    assert requeues == [] and callback.received
    assert "timed-out too many times" in callback.not_requeued


def test_outside_submitit_the_signal_is_left_alone(tmp_path):
    previous = signal.getsignal(signal.SIGUSR2), signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        callback = CheckpointOnSigterm(tmp_path)
        callback.on_train_start(None, None)
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
def test_training_signalled_by_submitit_saves_that_batch_and_stops(
    submitit_job, tmp_path, timeouts_left
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

    # batches 0 to 3 trained: the signal's batch ended and was saved
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["global_step"] == 4
    assert requeues == ([1] if timeouts_left else [])
    if timeouts_left:
        assert type(stop.value) is SIGTERMException  # the job runs again: nothing to report
    else:  # the job ends: the reason goes to submitit, through lovaszseg.train
        assert isinstance(stop.value, NotRequeued)
        assert "timed-out too many times" in str(stop.value) and "step 4" in str(stop.value)
