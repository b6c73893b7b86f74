"""The map-style Dataset every DataModule uses: decode a listed pair, transform, emit the batch dict."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from lovaszseg.data.files import Sample, read_image, read_label

LabelDecoder = Callable[[np.ndarray, Sample], np.ndarray]


def pair_problems(
    image: np.ndarray, label: np.ndarray, sample: Sample, num_classes: int, ignore_index: int
) -> list[str]:
    """What is wrong with a decoded pair, naming its files: sizes that differ, and label values
    that are neither a class nor the ignore index. Training stops at the first; ``check`` lists
    them all."""
    problems = []
    if image.shape[:2] != label.shape:
        problems.append(
            f"image {sample.image} is {image.shape[1]}x{image.shape[0]} but label "
            f"{sample.label} is {label.shape[1]}x{label.shape[0]}"
        )
    invalid = (label >= num_classes) & (label != ignore_index)
    if invalid.any():
        problems.append(
            f"label {sample.label} holds values {sorted(np.unique(label[invalid]).tolist())}; "
            f"expected 0..{num_classes - 1} or {ignore_index}"
        )
    return problems


class SegmentationDataset(Dataset):
    """Yields `{"image": float32 [3,H,W], "mask": int64 [H,W], "name": str}`."""

    def __init__(
        self,
        samples: Sequence[Sample],
        transform,
        decode_label: LabelDecoder,
        num_classes: int,
        ignore_index: int = 255,
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.decode_label = decode_label
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The decoded image [H,W,3] and class-index label [H,W], before any transform."""
        sample = self.samples[index]
        image = read_image(sample.image)
        label = self.decode_label(read_label(sample.label), sample)
        problems = pair_problems(image, label, sample, self.num_classes, self.ignore_index)
        if problems:
            raise ValueError(problems[0])
        return image, label

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """``key``: an index, or (index, augmentation seed) from an ``EpochSampler``."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        if seed is not None and hasattr(self.transform, "reseed"):
            self.transform.reseed(seed)
        image, label = self.load(index)
        out = self.transform(image=image, mask=label)
        return {"image": out["image"], "mask": out["mask"].long(), "name": self.samples[index].name}


def seed_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: give each worker's augmentations their own seeded stream.

    albumentations keeps its own generator, which forked workers would otherwise share (the same
    crops in every worker, every epoch). `info.seed` derives from torch's seed, so runs stay
    reproducible under `seed_everything`.
    """
    info = get_worker_info()
    if info is not None and hasattr(info.dataset.transform, "reseed"):
        info.dataset.transform.reseed(info.seed % 2**32)


def pad_collate(batch: list[dict], ignore_index: int = 255) -> dict:
    """Stack samples of different sizes by padding bottom/right (image 0, mask ignore_index).

    Evaluation keeps whole images, which need not share a size (VOC); training crops do.
    """
    height = max(item["image"].shape[1] for item in batch)
    width = max(item["image"].shape[2] for item in batch)
    images = torch.zeros(len(batch), batch[0]["image"].shape[0], height, width)
    masks = torch.full((len(batch), height, width), ignore_index, dtype=torch.int64)
    for i, item in enumerate(batch):
        h, w = item["mask"].shape
        images[i, :, :h, :w] = item["image"]
        masks[i, :h, :w] = item["mask"]
    return {"image": images, "mask": masks, "name": [item["name"] for item in batch]}
