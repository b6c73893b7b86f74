"""PreciseBN: the recomputed statistics are exactly the average over the given batches, and
recomputing them draws nothing from the generators training uses."""

from __future__ import annotations

import torch
from torch import nn

from lovaszseg.callbacks.precise_bn import recalibrate_batchnorm
from tests.train.entry import metric_rows


def test_running_stats_become_the_average_over_batches():
    torch.manual_seed(0)
    norm = nn.BatchNorm2d(3, momentum=0.1)
    model = nn.Sequential(norm).eval()
    batches = [torch.randn(4, 3, 5, 5) * (i + 1) + i for i in range(3)]
    assert recalibrate_batchnorm(model, batches) == 3
    means = torch.stack([b.mean(dim=(0, 2, 3)) for b in batches])
    variances = torch.stack([b.transpose(0, 1).reshape(3, -1).var(dim=1) for b in batches])
    torch.testing.assert_close(norm.running_mean, means.mean(0))
    torch.testing.assert_close(norm.running_var, variances.mean(0))
    assert norm.momentum == 0.1 and not model.training


def test_no_batches_leaves_statistics_alone():
    norm = nn.BatchNorm1d(2)
    norm.running_mean.fill_(3.0)
    model = nn.Sequential(norm).train()
    assert recalibrate_batchnorm(model, []) == 0
    assert norm.running_mean.tolist() == [3.0, 3.0] and model.training


def test_stale_statistics_no_longer_flatten_eval_predictions():
    """A layer whose inputs shrank since init: eval output collapses until recalibrated."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm1d(1)).eval()
    small = [torch.randn(64, 1) * 0.01 for _ in range(4)]
    probe = torch.tensor([[-0.01], [0.01]])
    assert model(probe).abs().max() < 0.02  # stale var 1.0: everything maps near 0
    recalibrate_batchnorm(model, small)
    assert model(probe)[1] - model(probe)[0] > 1.5  # now ±1 sigma apart


def test_recalibration_leaves_the_global_generator_where_it_was():
    """Dropout draws masks in the training-mode passes; they must not move torch's generator,
    or validating more often would change the dropout masks of every later training step."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)).eval()
    batches = [torch.randn(8, 4) for _ in range(3)]
    before = torch.get_rng_state()
    model.train()(batches[0])  # the plain forward does draw: the check below can fail
    assert not torch.equal(torch.get_rng_state(), before)
    torch.set_rng_state(before)
    assert recalibrate_batchnorm(model, batches) == 3
    assert torch.equal(torch.get_rng_state(), before)


def test_how_often_a_run_validates_does_not_change_its_training(run_entry, tmp_path):
    """The same run validated after every epoch and only after the last trains the same losses,
    epoch for epoch (smp's DeepLabV3+ has dropout, which PreciseBN's passes would otherwise draw)."""
    losses = {}
    for every in (1, 3):
        run = tmp_path / f"every{every}"
        run_entry(
            "lovaszseg.train",
            "trainer.max_epochs=3",
            f"trainer.check_val_every_n_epoch={every}",
            f"hydra.run.dir={run}",
        )
        losses[every] = [r["train/loss"] for r in metric_rows(run) if r["train/loss"]]
    assert len(losses[1]) == 3 and losses[1] == losses[3]
