"""The training order as a function of (seed, epoch): what lets a run resume mid-epoch exactly.

PyTorch's ``RandomSampler`` draws each epoch's order, and albumentations each crop, from
generators whose state no checkpoint holds. A run resumed mid-epoch (a SLURM preemption's SIGTERM
saves ``last.ckpt`` at the next batch) then trains the rest of that epoch on a fresh shuffle, some
scenes twice and some not at all, and every later epoch differs from the run that was not
stopped; Lightning warns that the results are unreliable. Here the order and every sample's
augmentation seed follow from (seed, epoch) alone, and an epoch can start part-way, so a resumed
run trains on exactly the batches the stopped one would have. The seeds travel with the indices,
so the batches are also the same for any number of DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Sampler


@dataclass(frozen=True)
class TrainPosition:
    """Where training stands in the data: ``batches`` batches into epoch ``epoch``."""

    epoch: int
    batches: int = 0

    @classmethod
    def from_state(cls, state: object) -> TrainPosition:
        """The position stored in a checkpoint, with a clear error for anything else."""
        if (
            not isinstance(state, dict)
            or sorted(state) != ["batches", "epoch"]
            or not all(isinstance(v, int) and v >= 0 for v in state.values())
        ):
            raise ValueError(
                f"the checkpoint's train_position is {state!r}; expected "
                "{'epoch': int >= 0, 'batches': int >= 0}"
            )
        return cls(state["epoch"], state["batches"])


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, augmentation seed)`` in an order drawn from (seed, epoch) alone.

    Lightning calls ``set_epoch`` at the start of every epoch; without it (a hand-written
    loop) each iteration moves to the next epoch, so epochs still differ. ``start`` skips that
    many samples of the first epoch iterated (the rest of a resumed epoch); later ones are whole.
    """

    def __init__(self, length: int, seed: int, epoch: int = 0, start: int = 0) -> None:
        if length < 1 or not 0 <= start <= length:
            raise ValueError(
                f"EpochSampler needs length >= 1 and 0 <= start <= length, got "
                f"length {length}, start {start}"
            )
        self.length = length
        self.seed = seed
        self.epoch = epoch
        self.start = start

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int) -> tuple[list[int], list[int]]:
        """Epoch ``epoch``'s permutation of the indices, and each index's augmentation seed."""
        generator = torch.Generator().manual_seed((self.seed % 2**40) * 2**20 + epoch % 2**20)
        permutation = torch.randperm(self.length, generator=generator)
        seeds = torch.randint(0, 2**31 - 1, (self.length,), generator=generator)
        return permutation.tolist(), seeds.tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        permutation, seeds = self.order(self.epoch)
        start, self.start = self.start, 0
        self.epoch += 1
        return iter([(index, seeds[index]) for index in permutation[start:]])

    def __len__(self) -> int:
        return self.length


class ResumableDataLoader(DataLoader):
    """A DataLoader over an ``EpochSampler`` that tells Lightning it resumes mid-epoch.

    Lightning asks the loader for ``state_dict``/``load_state_dict`` and warns when they are
    missing. The position itself is the DataModule's state: Lightning restores that before it
    builds any loader, whereas a loader's own state is dropped when ``configure_optimizers`` reads
    ``trainer.estimated_stepping_batches`` (Lightning issue 20550), as the poly schedule does.
    """

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        pass
