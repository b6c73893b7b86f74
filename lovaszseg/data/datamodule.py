"""The LightningDataModule that DeepGlobe and VOC share: config contract, checks and loaders.

A subclass says where its samples are (`scan_samples`) and how its stored labels become class
indices (`decode_label`); this class does the rest the same way for both: validate the config,
let a synthetic stand-in (`synthetic`, any `SyntheticSource`) write the root first, fail before
training on a missing root or missing files, and build seeded loaders.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import hydra.utils
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch.utils.data import DataLoader

from lovaszseg.data.dataset import LabelDecoder, SegmentationDataset, pad_collate, seed_worker
from lovaszseg.data.files import Problem, Sample, require_files
from lovaszseg.data.sampling import EpochSampler, ResumableDataLoader, TrainPosition
from lovaszseg.data.transforms import EvalPreset, TrainPreset


class SyntheticSource(Protocol):
    """What a DataModule asks of the data generator in `data.synthetic`: it writes files in the
    dataset's own layout, which the DataModule then reads as it reads real data
    (``lovaszseg.data.synthetic`` holds the generators)."""

    @property
    def split_sizes(self) -> tuple[int, int]:
        """How many train and val samples it writes."""
        ...

    def prepare(self, root: Path) -> None:
        """Make `root` hold the generated data (a no-op when it already does)."""
        ...


def per_process_batch_size(global_batch_size: int, world_size: int) -> int:
    """``data.batch_size`` is global (as in PaddleSeg's configs); each process loads its share."""
    if global_batch_size % world_size:
        raise ValueError(
            f"data.batch_size={global_batch_size} is the global batch and must divide evenly "
            f"across {world_size} processes (trainer.devices x trainer.num_nodes)"
        )
    return global_batch_size // world_size


def _plain(value: Any) -> Any:
    """OmegaConf containers as plain Python (Hydra passes DictConfig / ListConfig)."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _build(part: Any) -> Any:
    """A part (a preset, the generator) given as an object, or as a `_target_` mapping when the
    DataModule is instantiated non-recursively."""
    if isinstance(part, Mapping | DictConfig):
        return hydra.utils.instantiate(part)
    return part


def _synthetic_source(synthetic: Any) -> SyntheticSource | None:
    """The generator object; a `_target_` mapping (a non-recursive instantiation) is built here,
    and settings without one are refused: they do not say which generator writes them."""
    source = _build(synthetic)
    if isinstance(source, Mapping | DictConfig):
        raise ValueError(
            f"data.synthetic has settings {sorted(source)} but no _target_ naming the generator "
            "that writes them; expected e.g. `_target_: lovaszseg.data.synthetic.SyntheticRoads` "
            "beside them (as conf/data/synthetic_roads.yaml has), or null for data on disk"
        )
    return source


class SegmentationDataModule(pl.LightningDataModule):
    """Dict batches `{"image", "mask", "name"}`; `num_classes`, `ignore_index`, `class_names`."""

    dataset_name = "dataset"

    def __init__(
        self,
        root: str | Path,
        num_classes: int,
        class_names: Sequence[str],
        ignore_index: int = 255,
        batch_size: int = 8,
        num_workers: int = 0,
        crop_size: int = 512,
        train_transform: Any = None,
        eval_transform: Any = None,
        val_batch_size: int | None = None,
        synthetic: SyntheticSource | None = None,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__()
        self.root = Path(root).expanduser()
        self.num_classes = int(num_classes)
        self.class_names = list(_plain(class_names))
        self.ignore_index = int(ignore_index)
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"class_names has {len(self.class_names)} entries {self.class_names} but "
                f"num_classes is {self.num_classes}"
            )
        if 0 <= self.ignore_index < self.num_classes:
            raise ValueError(f"ignore_index {self.ignore_index} collides with a class index")
        if int(batch_size) < 1 or int(num_workers) < 0:
            raise ValueError(
                f"need batch_size >= 1 and num_workers >= 0, got {batch_size} and {num_workers}"
            )
        self.batch_size = int(batch_size)  # global, as in PaddleSeg's configs: split over processes
        self._val_batch_size = None if val_batch_size is None else int(val_batch_size)
        self.num_workers = int(num_workers)
        self.crop_size = int(crop_size)
        self.train_transform = _build(train_transform) or TrainPreset(
            crop_size=self.crop_size, ignore_index=self.ignore_index
        )
        self.eval_transform = _build(eval_transform) or EvalPreset(ignore_index=self.ignore_index)
        self.synthetic = _synthetic_source(synthetic)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.train_dataset: SegmentationDataset | None = None
        self.val_dataset: SegmentationDataset | None = None
        self._resume_at: TrainPosition | None = None  # from a checkpoint, for the next loader

    # -- what a dataset defines ------------------------------------------------------------------
    def scan_samples(self, split: str) -> tuple[list[Sample], list[Problem]]:
        """The listed samples of `split` ("train" or "val") and every malformed list line; the
        files need not exist (`check` reports them all, training stops at the first)."""
        raise NotImplementedError

    # Stored label values [H,W] (or [H,W,C]) -> class indices / ignore_index [H,W] uint8. A plain
    # module-level function (set as a staticmethod), so DataLoader workers can pickle it.
    decode_label: LabelDecoder

    # -- shared behaviour ------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Write the synthetic stand-in into `root` unless it is already there."""
        if self.synthetic is not None:
            self.synthetic.prepare(self.root)

    @property
    def per_process_batch_size(self) -> int:
        """Each process's share of the global ``batch_size`` (all of it outside a Trainer)."""
        return per_process_batch_size(self.batch_size, self._world_size())

    @property
    def val_batch_size(self) -> int:
        """``val_batch_size`` per process when set, else the training batch per process."""
        return self._val_batch_size or self.per_process_batch_size

    def setup(self, stage: str | None = None) -> None:
        # a global batch that does not divide over the processes is refused before data is read
        per_process_batch_size(self.batch_size, self._world_size())
        if self.train_dataset is not None:
            return
        train, val = self.check_files()
        self.train_dataset = self.make_dataset(train, self.train_transform)
        self.val_dataset = self.make_dataset(val, self.eval_transform)

    def check_files(self) -> tuple[list[Sample], list[Sample]]:
        """The train and val samples, after checking that the root, its lists and every listed
        file are there; called before any model or Trainer is built, so missing data is the
        first thing a run reports, with the command that fetches it."""
        self.prepare_data()  # a no-op read of the manifest when rank 0 already generated
        if not self.root.is_dir():
            raise ValueError(
                f"{self.dataset_name} root {self.root} does not exist; fetch the dataset with "
                f"`python -m lovaszseg.data.download {self.download_name} --root {self.root}`, "
                "or point data.root (or paths.data_dir) at where it is"
            )
        train, val = self.find_samples("train"), self.find_samples("val")
        require_files(train + val)
        return train, val

    @property
    def download_name(self) -> str:
        """The dataset's name for ``python -m lovaszseg.data.download``."""
        raise NotImplementedError

    def find_samples(self, split: str) -> list[Sample]:
        samples, problems = self.scan_samples(split)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ValueError(f"{problems[0].location}: {problems[0].message}{more}")
        if not samples:
            raise ValueError(f"no {split} samples for {self.dataset_name} in {self.root}")
        return samples

    def make_dataset(self, samples: Sequence[Sample], transform: Any) -> SegmentationDataset:
        return SegmentationDataset(
            samples, transform, self.decode_label, self.num_classes, self.ignore_index
        )

    def _loader(self, dataset: SegmentationDataset | None, train: bool, **order: Any) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        batch_size = self.per_process_batch_size if train else self.val_batch_size
        loader = ResumableDataLoader if "sampler" in order else DataLoader
        # its own generator: a loader's worker seeds then do not draw from torch's global one,
        # whose draws (dropout) a checkpoint carries (lovaszseg.callbacks.random_state)
        return loader(
            dataset,
            batch_size=batch_size,
            drop_last=train and len(dataset) >= batch_size,  # no size-1 batch for BatchNorm
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
            worker_init_fn=seed_worker,
            collate_fn=functools.partial(pad_collate, ignore_index=self.ignore_index),
            generator=torch.Generator().manual_seed(torch.initial_seed()),
            **order,
        )

    def train_dataloader(self) -> DataLoader:
        """Batches in an order drawn from (torch's seed, epoch), each sample with its own
        augmentation seed, so a run resumes mid-epoch exactly (``lovaszseg.data.sampling``);
        under DDP each process takes its share of the same order."""
        if self.train_dataset is None:
            return self._loader(self.train_dataset, train=True, shuffle=True)
        position, self._resume_at = self._resume_at, None
        if position is None:
            position = TrainPosition(self.trainer.current_epoch if self.trainer else 0)
        sampler = EpochSampler(
            len(self.train_dataset),
            seed=torch.initial_seed(),
            epoch=position.epoch,
            start=min(position.batches * self.per_process_batch_size, self._share_of_train()),
            num_replicas=self._world_size(),
            rank=self.trainer.global_rank if self.trainer is not None else 0,
        )
        return self._loader(self.train_dataset, train=True, sampler=sampler)

    def _world_size(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    def _share_of_train(self) -> int:
        """How many training samples each process takes in an epoch (the last ones padded)."""
        return -(-len(self.train_dataset) // self._world_size())

    def state_dict(self) -> dict[str, Any]:
        """The training position, saved in every checkpoint Lightning writes during fit."""
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if done >= trainer.num_training_batches:  # the epoch's last batch: the next one starts
            return {"train_position": {"epoch": trainer.current_epoch + 1, "batches": 0}}
        return {"train_position": {"epoch": trainer.current_epoch, "batches": done}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume the data where the checkpoint left it (Lightning calls this before it asks for
        any loader)."""
        if "train_position" in state_dict:
            self._resume_at = TrainPosition.from_state(state_dict["train_position"])

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, train=False)
