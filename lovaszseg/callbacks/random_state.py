"""Carry the random generators through a checkpoint, so a resumed run draws what the stopped
one would have (dropout masks above all: smp's DeepLabV3+ drops half its ASPP features).

A checkpoint holds weights, optimizer and schedule but not the generators; a resumed process
draws its dropout masks from wherever its own seeding left them, and training diverges from the
first resumed step. The states are taken when a checkpoint is written and put back when training
starts (after the model is built and any sanity check has run), so nothing draws in between. The
data's own order and augmentation follow from (seed, epoch), not from these generators
(``lovaszseg.data.sampling``). Exact for single-process runs; a multi-process run saves rank 0's.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch


def random_states() -> dict[str, Any]:
    """The global generators of Python, NumPy, torch and (if present) every CUDA device, as
    tensors, lists and numbers (what ``torch.load(weights_only=True)`` reads back)."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: dict[str, Any]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        cuda = states["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)


class RandomStateCheckpoint(pl.Callback):
    """Save the random generators in every checkpoint; restore them when a resumed fit starts."""

    def __init__(self) -> None:
        self.pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"random_states": random_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pending = state_dict.get("random_states")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.pending is not None:
            set_random_states(self.pending)
            self.pending = None
