"""Precise BatchNorm statistics before each validation (PreciseBN, as in detectron2 / fvcore).

BatchNorm evaluates with running averages that trail the weights by ~1/momentum steps. Long GPU
runs never notice, but a short CPU run from scratch (a few dozen steps) validates with stale
statistics: the network separates roads in training mode and predicts a constant in eval mode,
which would make every loss look equally useless. Recomputing the statistics as a plain average
over a few training batches, without gradients, removes that artefact for a few forward passes.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    """Every BatchNorm layer of ``model`` (any dimension, synced or not)."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: Iterable[torch.Tensor]) -> int:
    """Reset every BatchNorm's running mean / var to their average over ``images`` batches.

    Returns the number of batches used (0 leaves the statistics untouched). The forward passes
    run in training mode, so dropout draws masks; they draw from a fork of the global generators,
    which come back as they were: how often a run validates does not change what it trains.
    """
    norms = [m for m in batchnorm_layers(model) if m.track_running_stats]
    if not norms:
        return 0
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda):
        return _recalibrate(model, norms, images)


def _recalibrate(model: nn.Module, norms: list[nn.Module], images: Iterable[torch.Tensor]) -> int:
    was_training = model.training
    momenta = [m.momentum for m in norms]
    saved = [
        (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
        for m in norms
    ]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches below
    model.train()
    used = 0
    for batch in images:
        model(batch)
        used += 1
    for norm, momentum, (mean, var, count) in zip(norms, momenta, saved, strict=True):
        norm.momentum = momentum
        if used == 0:
            norm.running_mean.copy_(mean)
            norm.running_var.copy_(var)
            norm.num_batches_tracked.copy_(count)
    model.train(was_training)
    return used


class PreciseBatchNorm(pl.Callback):
    """Before each validation during fit, recompute BatchNorm statistics on ``num_batches``
    fresh training batches (a new loader, so an epoch in progress is not disturbed)."""

    def __init__(self, num_batches: int = 8) -> None:
        if num_batches < 1:
            raise ValueError(f"PreciseBatchNorm needs num_batches >= 1, got {num_batches}")
        self.num_batches = num_batches

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn != "fit" or trainer.sanity_checking or trainer.datamodule is None:
            return
        loader = trainer.datamodule.train_dataloader()
        images = (b["image"].to(pl_module.device) for b in islice(loader, self.num_batches))
        recalibrate_batchnorm(pl_module, images)
