"""Runs stopped from outside (SIGKILL, SIGTERM) and resumed: nothing lost, nothing overwritten."""

from __future__ import annotations

import signal

import pytest
import torch

from tests.train.entry import (
    epochs_with,
    metric_rows,
    results,
    run_dirs,
    signal_after_epoch,
    start_training,
)


def monitored_checkpoint_state(path) -> dict:
    """The best-checkpoint callback's state as stored in a checkpoint file."""
    states = torch.load(path, weights_only=False)["callbacks"]
    (state,) = [v for k, v in states.items() if "'monitor': 'val/mIoU'" in k]
    return state


def best_by_metrics_csv(run) -> tuple[int, float]:
    """(epoch, val/mIoU) of the best validation in metrics.csv, the earliest on ties."""
    scores = {int(r["epoch"]): float(r["val/mIoU"]) for r in metric_rows(run) if r["val/mIoU"]}
    epoch = max(scores, key=lambda e: (scores[e], -e))
    return epoch, scores[epoch]


def test_kill_after_a_new_best_then_resume_keeps_the_true_best(data_dir, run_entry, tmp_path):
    overrides = ["trainer.max_epochs=3"]
    proc = start_training(data_dir, tmp_path, *overrides)
    # epoch 0 always sets a new best
    assert signal_after_epoch(proc, tmp_path, 0, signal.SIGKILL) == -signal.SIGKILL
    (run,) = run_dirs(tmp_path)
    epoch0 = best_by_metrics_csv(run)
    # last.ckpt carries the best-checkpoint state of its own epoch, not one validation older
    state = monitored_checkpoint_state(run / "checkpoints" / "last.ckpt")
    assert float(state["best_model_score"]) == pytest.approx(epoch0[1])
    assert state["best_model_path"].endswith("best.ckpt")

    run_entry("lovaszseg.train", *overrides, f"hydra.run.dir={run}", "ckpt_path=last")
    epoch, score = best_by_metrics_csv(run)
    summary = results(run)
    assert (summary["status"], summary["final"]["epoch"]) == ("completed", 2)
    assert (summary["best"]["epoch"], summary["best"]["val/mIoU"]) == (epoch, pytest.approx(score))
    best = torch.load(run / "checkpoints" / "best.ckpt", weights_only=False)
    assert best["epoch"] == epoch
    assert float(
        monitored_checkpoint_state(run / "checkpoints" / "best.ckpt")["best_model_score"]
    ) == pytest.approx(score)


def test_sigterm_saves_last_checkpoint_marks_interrupted_and_the_resume_completes(
    data_dir, run_entry, tmp_path
):
    overrides = ["trainer.max_epochs=3", "trainer.limit_train_batches=4"]
    proc = start_training(data_dir, tmp_path, *overrides)
    assert signal_after_epoch(proc, tmp_path, 0, signal.SIGTERM) == 128 + signal.SIGTERM
    (run,) = run_dirs(tmp_path)
    summary = results(run)
    assert summary["status"] == "interrupted" and "SIGTERM" in summary["error"]
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["global_step"] > 4, "last.ckpt must be saved at the SIGTERM, not at epoch 0"
    assert "SIGTERM at epoch" in (run / "train.log").read_text()

    run_entry("lovaszseg.train", *overrides, f"hydra.run.dir={run}", "ckpt_path=last")
    summary = results(run)
    assert (summary["status"], summary["final"]["epoch"]) == ("completed", 2)
    rows = metric_rows(run)
    assert epochs_with(rows, "val/mIoU") == [0, 1, 2]
    assert epochs_with(rows, "train/loss") == [0, 1, 2]
    steps = [int(r["step"]) for r in rows if r["val/mIoU"]]
    assert steps == [3, 7, 11]  # 4 steps an epoch, none repeated or skipped across the resume


def test_a_run_stopped_mid_epoch_and_resumed_ends_where_the_unstopped_run_ends(
    data_dir, run_entry, tmp_path
):
    overrides = ["trainer.max_epochs=3", "trainer.limit_train_batches=4"]
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    proc = start_training(data_dir, stopped, *overrides)
    assert signal_after_epoch(proc, stopped, 0, signal.SIGTERM) == 128 + signal.SIGTERM
    (run,) = run_dirs(stopped)
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert 4 < saved["global_step"] < 8, "the SIGTERM checkpoint must fall inside epoch 1"
    position = saved["DeepGlobeRoadDataModule"]["train_position"]
    assert position == {"epoch": 1, "batches": saved["global_step"] - 4}

    resumed = run_entry("lovaszseg.train", *overrides, f"hydra.run.dir={run}", "ckpt_path=last")
    assert "not resumable" not in resumed.stderr  # Lightning's mid-epoch warning
    run_entry("lovaszseg.train", *overrides, f"hydra.run.dir={tmp_path / 'straight'}")

    def scores(folder):
        return [(r["epoch"], r["val/mIoU"]) for r in metric_rows(folder) if r["val/mIoU"]]

    assert scores(run) == scores(tmp_path / "straight")
    weights = [
        torch.load(folder / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
        for folder in (run, tmp_path / "straight")
    ]
    assert weights[0].keys() == weights[1].keys()
    differ = [k for k in weights[0] if not torch.equal(weights[0][k], weights[1][k])]
    assert not differ, f"{len(differ)} tensors differ after the resume, e.g. {differ[:3]}"
