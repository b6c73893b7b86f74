"""A two-process DDP run (gloo on CPU) stopped mid-epoch and resumed ends with the weights of
the run that was not stopped: every rank trains on its share of the same (seed, epoch) order."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
import torch

from tests.train.entry import epoch_finished, metric_rows, run_dirs, start_training

# 16 training images, a global batch of 4 (2 per rank): 4 steps an epoch, so a SIGTERM after
# epoch 0 lands inside epoch 1. Their own data folder: the session's synthetic set has 8 images.
DDP_RUN = (
    "trainer=ddp",
    "trainer.devices=2",
    "trainer.accelerator=cpu",
    "trainer.limit_train_batches=1.0",
    "trainer.max_epochs=3",
    "data.synthetic.num_train=16",
)


def sigterm_after_epoch_0(proc: subprocess.Popen, root) -> int:
    """SIGTERM once epoch 0 is saved and logged (two ranks start slowly: up to 10 minutes)."""
    try:
        deadline = time.monotonic() + 600
        while not epoch_finished(root, 0):
            assert proc.poll() is None, "training ended before epoch 0 was logged"
            assert time.monotonic() < deadline, "epoch 0 not finished within 600 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()


def last_weights(run_dir) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


@pytest.mark.slow
def test_a_ddp_run_stopped_mid_epoch_and_resumed_ends_as_the_unstopped_run(tmp_path):
    data = tmp_path / "data"
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    proc = start_training(data, stopped, *DDP_RUN)
    assert sigterm_after_epoch_0(proc, stopped) == 128 + signal.SIGTERM
    (run,) = run_dirs(stopped)
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert 4 < saved["global_step"] < 8, "the SIGTERM checkpoint must fall inside epoch 1"
    position = saved["DeepGlobeRoadDataModule"]["train_position"]
    assert position == {"epoch": 1, "batches": saved["global_step"] - 4}

    resumed = start_training(data, tmp_path, *DDP_RUN, f"hydra.run.dir={run}", "ckpt_path=last")
    assert resumed.wait(timeout=600) == 0
    straight = start_training(data, tmp_path, *DDP_RUN, f"hydra.run.dir={tmp_path / 'straight'}")
    assert straight.wait(timeout=600) == 0

    def scores(folder):
        return {r["epoch"]: r["val/mIoU"] for r in metric_rows(folder) if r["val/mIoU"]}

    assert scores(run) == scores(tmp_path / "straight")
    weights = last_weights(run), last_weights(tmp_path / "straight")
    assert weights[0].keys() == weights[1].keys()
    differ = [k for k in weights[0] if not torch.equal(weights[0][k], weights[1][k])]
    assert not differ, f"{len(differ)} tensors differ after the resume, e.g. {differ[:3]}"
