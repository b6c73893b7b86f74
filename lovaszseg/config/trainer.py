"""The Trainer as configured: its callbacks in a safe order, SyncBatchNorm only where PyTorch has
it, and no ``ddp`` relaunch inside a sweep."""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint

from lovaszseg.config.job import in_multirun
from lovaszseg.config.relaunch import relaunches_script

log = logging.getLogger(__name__)


def sync_batchnorm_supported(trainer_cfg: DictConfig) -> bool:
    """SyncBatchNorm is GPU-only in PyTorch; CPU (gloo) ranks keep per-rank BatchNorm statistics."""
    accelerator = trainer_cfg.get("accelerator", "auto")
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    return accelerator in ("gpu", "cuda")


def best_checkpoints_first(callbacks: list[pl.Callback]) -> list[pl.Callback]:
    """Checkpoint callbacks that monitor a metric before those that do not (order otherwise kept).

    Every checkpoint file stores every callback's state, written when its own callback saves. If
    last.ckpt were saved before the best-checkpoint callback took in the epoch, it would carry
    the best score of one validation earlier, and after a resume a worse epoch could replace
    best.ckpt.
    """
    return sorted(callbacks, key=lambda c: isinstance(c, ModelCheckpoint) and c.monitor is None)


def refuse_relaunch_in_multirun(trainer: pl.Trainer) -> None:
    """Lightning's ``ddp`` re-executes the command line, which would nest a sweep inside each job."""
    if in_multirun() and relaunches_script(trainer):
        raise ValueError(
            "trainer=ddp relaunches the script and cannot run inside a Hydra multirun; use "
            "trainer=ddp_spawn for sweeps on one node, or hydra/launcher=slurm (one task per GPU)"
        )


def instantiate_all(group: DictConfig | None) -> list[Any]:
    """Every non-null entry of a config group of named objects (callbacks, loggers)."""
    return [instantiate(c) for c in (group or {}).values() if c is not None]


def build_trainer(cfg: DictConfig, loggers: list[Any], extra: list[pl.Callback]) -> pl.Trainer:
    """The configured Trainer with the configured callbacks, then ``extra``."""
    callbacks = best_checkpoints_first(instantiate_all(cfg.get("callbacks")))
    sync_batchnorm = bool(cfg.trainer.get("sync_batchnorm"))
    if sync_batchnorm and not sync_batchnorm_supported(cfg.trainer):
        log.info("SyncBatchNorm needs GPUs; CPU ranks keep their own BatchNorm statistics")
        sync_batchnorm = False
    trainer = instantiate(
        cfg.trainer, callbacks=[*callbacks, *extra], logger=loggers, sync_batchnorm=sync_batchnorm
    )
    refuse_relaunch_in_multirun(trainer)
    return trainer
