"""The training order drawn from (seed, epoch): whole epochs, exact mid-epoch resumes, and the
same batches for any number of workers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lovaszseg.data import DeepGlobeRoadDataModule
from lovaszseg.data.sampling import EpochSampler, TrainPosition
from lovaszseg.data.synthetic import SyntheticRoads
from tests.data.test_datamodules import TINY


def test_each_epoch_is_a_permutation_fixed_by_seed_and_epoch():
    sampler = EpochSampler(10, seed=3)
    epochs = [list(sampler) for _ in range(3)]  # no set_epoch: each pass moves on an epoch
    for epoch, drawn in enumerate(epochs):
        assert sorted(index for index, _ in drawn) == list(range(10))
        assert drawn == list(EpochSampler(10, seed=3, epoch=epoch))
    assert len({tuple(drawn) for drawn in epochs}) == 3
    assert list(EpochSampler(10, seed=4)) != epochs[0]
    # an index keeps its augmentation seed wherever the permutation puts it
    _, seeds = EpochSampler(10, seed=3).order(0)
    assert dict(epochs[0]) == dict(enumerate(seeds))


def test_set_epoch_picks_the_epoch_and_start_skips_only_the_first_pass():
    whole = [list(EpochSampler(12, seed=1, epoch=e)) for e in (5, 6)]
    sampler = EpochSampler(12, seed=1, epoch=5, start=8)
    assert list(sampler) == whole[0][8:]
    sampler.set_epoch(6)
    assert list(sampler) == whole[1]
    with pytest.raises(ValueError, match="start 13"):
        EpochSampler(12, seed=1, start=13)


def test_a_checkpoint_position_that_is_not_two_counts_is_refused():
    assert TrainPosition.from_state({"epoch": 2, "batches": 3}) == TrainPosition(2, 3)
    for bad in ({"epoch": 2}, {"epoch": -1, "batches": 0}, [2, 3], {"epoch": 1.5, "batches": 0}):
        with pytest.raises(ValueError, match="train_position"):
            TrainPosition.from_state(bad)


def roads(tmp_path, workers: int) -> DeepGlobeRoadDataModule:
    dm = DeepGlobeRoadDataModule(
        tmp_path / "r",
        crop_size=32,
        batch_size=2,
        num_workers=workers,
        synthetic=SyntheticRoads(**{**TINY, "num_train": 6}),
    )
    dm.setup()
    return dm


def batches(loader) -> list[tuple[list[str], torch.Tensor, torch.Tensor]]:
    return [(b["name"], b["image"], b["mask"]) for b in loader]


def same(a, b) -> bool:
    return len(a) == len(b) and all(
        x[0] == y[0] and torch.equal(x[1], y[1]) and torch.equal(x[2], y[2])
        for x, y in zip(a, b, strict=True)
    )


def test_workers_do_not_change_the_batches_and_epochs_differ(tmp_path):
    torch.manual_seed(7)
    in_process = roads(tmp_path, 0).train_dataloader()
    first, second = batches(in_process), batches(in_process)
    torch.manual_seed(7)
    with_workers = roads(tmp_path, 2).train_dataloader()
    assert same(batches(with_workers), first) and same(batches(with_workers), second)
    assert [names for names, _, _ in first] != [names for names, _, _ in second]
    torch.manual_seed(8)
    assert not same(batches(roads(tmp_path, 0).train_dataloader()), first)


def test_a_restored_position_starts_the_loader_mid_epoch_then_goes_on_whole(tmp_path):
    torch.manual_seed(7)
    straight = roads(tmp_path, 0).train_dataloader()
    epoch0, epoch1, epoch2 = batches(straight), batches(straight), batches(straight)
    dm = roads(tmp_path, 0)
    dm.load_state_dict({"train_position": {"epoch": 1, "batches": 2}})
    resumed = dm.train_dataloader()
    assert same(batches(resumed), epoch1[2:])
    assert same(batches(resumed), epoch2)
    assert same(batches(dm.train_dataloader()), epoch0)  # the position is used once
    assert len(epoch0) == 3


@pytest.mark.parametrize(("length", "ranks"), [(10, 3), (8, 2), (2, 4)])
def test_ranks_take_turns_through_the_single_process_order(length, ranks):
    """Rank r takes positions r, r + ranks, ... of the one order, padded with its own start as
    PyTorch's DistributedSampler pads, so each global batch is the same whatever the stops."""
    alone = list(EpochSampler(length, seed=5, epoch=2))
    shares = [
        list(EpochSampler(length, seed=5, epoch=2, num_replicas=ranks, rank=r))
        for r in range(ranks)
    ]
    per_rank = -(-length // ranks)
    assert all(len(share) == per_rank for share in shares)
    padded = (alone * ranks)[: per_rank * ranks]
    assert [shares[i % ranks][i // ranks] for i in range(per_rank * ranks)] == padded
    assert {index for share in shares for index, _ in share} == set(range(length))
    assert len(EpochSampler(length, seed=5, num_replicas=ranks, rank=0)) == per_rank


def test_a_rank_resumes_its_own_share_part_way():
    whole = list(EpochSampler(10, seed=5, epoch=1, num_replicas=2, rank=1))
    sampler = EpochSampler(10, seed=5, epoch=1, start=3, num_replicas=2, rank=1)
    assert list(sampler) == whole[3:]
    assert list(sampler) == list(EpochSampler(10, seed=5, epoch=2, num_replicas=2, rank=1))
    for bad in ({"start": 6}, {"rank": 2}, {"rank": -1}):
        with pytest.raises(ValueError, match="EpochSampler needs"):
            EpochSampler(10, seed=5, num_replicas=2, **{"rank": 0, **bad})


def test_lightning_keeps_the_sampler_under_ddp_instead_of_wrapping_it():
    from pytorch_lightning.trainer.connectors.data_connector import _DataConnector

    connection = SimpleNamespace(use_distributed_sampler=True, is_distributed=True)
    trainer = SimpleNamespace(_accelerator_connector=connection)  # what the check reads
    loader = torch.utils.data.DataLoader(
        range(10), sampler=EpochSampler(10, seed=5, num_replicas=2, rank=0)
    )
    connector = _DataConnector(trainer)
    assert not connector._requires_distributed_sampler(loader)
    plain = torch.utils.data.DataLoader(range(10), shuffle=True)
    assert connector._requires_distributed_sampler(plain)  # what Lightning would replace
