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
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler


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


class EpochSampler(DistributedSampler):
    """Yields ``(index, augmentation seed)`` in an order drawn from (seed, epoch) alone.

    Lightning calls ``set_epoch`` at the start of every epoch; without it (a hand-written
    loop) each iteration moves to the next epoch, so epochs still differ. ``start`` skips that
    many of this process's samples in the first epoch iterated (the rest of a resumed epoch);
    later ones are whole.

    Under DDP every rank draws the same permutation (the seed is the same on every rank) and
    takes every ``num_replicas``-th index from position ``rank``, the permutation padded with its
    own beginning so that all ranks have the same count, as PyTorch's ``DistributedSampler`` does.
    So the global batch of a step is the same whether or not the run was stopped before it. It
    is a ``DistributedSampler`` so that Lightning keeps it instead of wrapping it in its own.
    """

    def __init__(
        self,
        length: int,
        seed: int,
        epoch: int = 0,
        start: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        per_rank = -(-length // num_replicas) if num_replicas >= 1 else 0
        if length < 1 or not 0 <= rank < num_replicas or not 0 <= start <= per_rank:
            raise ValueError(
                f"EpochSampler needs length >= 1, 0 <= rank < num_replicas and 0 <= start <= "
                f"its share of the samples, got length {length}, start {start}, rank {rank}, "
                f"num_replicas {num_replicas}"
            )
        super().__init__(
            range(length), num_replicas=num_replicas, rank=rank, shuffle=False, seed=seed
        )
        self.length = length
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
        repeats = -(-self.total_size // self.length)
        mine = (permutation * repeats)[: self.total_size][self.rank :: self.num_replicas]
        start, self.start = self.start, 0
        self.epoch += 1
        return iter([(index, seeds[index]) for index in mine[start:]])

    def __len__(self) -> int:
        return self.num_samples


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
