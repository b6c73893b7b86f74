"""DeepGlobe Road Extraction: PaddleSeg's MiniDeepGlobe list files or the original release.

Two layouts, one module: `layout: list` reads `train.txt` / `val.txt` with `image|label` lines
(PaddleSeg's MiniDeepGlobeRoadExtraction); `layout: original` reads `*_sat.jpg` beside
`*_mask.png` and draws a seeded train/val split (800 / 200 by default, as PaddleSeg did).
Roads are binary: one logit channel, labels 0 / 1, padding 255.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lovaszseg.data.datamodule import SegmentationDataModule, SyntheticSource
from lovaszseg.data.files import Problem, Sample, parse_list_file


def binarise_road_label(raw: np.ndarray, sample: Sample) -> np.ndarray:
    """0/1 labels pass through; anything else (0/255 masks, JPEG-ish grey, RGB) splits at 128.

    The original DeepGlobe masks are 0/255 PNGs that went through JPEG at some point, so their
    values scatter near 0 and 255; PaddleSeg's mini set stores 0/1.
    """
    grey = raw.max(axis=-1) if raw.ndim == 3 else raw
    if grey.max(initial=0) <= 1:
        return grey.astype(np.uint8)
    return (grey >= 128).astype(np.uint8)


def original_pairs(root: Path) -> list[Sample]:
    """Every `*_sat.jpg` under `root/train` (or `root`), paired with its `*_mask.png`."""
    folder = root / "train" if (root / "train").is_dir() else root
    images = sorted(folder.glob("*_sat.jpg"))
    if not images:
        raise ValueError(f"no *_sat.jpg files in {folder}; is this the DeepGlobe road dataset?")
    return [
        Sample(
            name=image.name[: -len("_sat.jpg")],
            image=image,
            label=image.with_name(image.name.replace("_sat.jpg", "_mask.png")),
            source=str(folder),
        )
        for image in images
    ]


def seeded_split(samples: Sequence[Sample], sizes: Sequence[int], seed: int) -> list[list[Sample]]:
    """Disjoint random subsets of the given sizes, the same for the same seed and file set."""
    if sum(sizes) > len(samples):
        raise ValueError(
            f"split sizes {list(sizes)} need {sum(sizes)} samples, found {len(samples)}"
        )
    order = np.random.default_rng(seed).permutation(len(samples))
    bounds = np.cumsum([0, *sizes])
    return [[samples[i] for i in order[a:b]] for a, b in itertools.pairwise(bounds)]


class DeepGlobeRoadDataModule(SegmentationDataModule):
    """Binary road extraction, from list files or from the original release's folder."""

    dataset_name = "DeepGlobe road"
    decode_label = staticmethod(binarise_road_label)

    def __init__(
        self,
        root: str | Path,
        num_classes: int = 2,
        class_names: Sequence[str] = ("background", "road"),
        layout: str = "auto",
        train_list: str = "train.txt",
        val_list: str = "val.txt",
        separator: str = "|",
        split_seed: int = 0,
        split_sizes: Sequence[int] = (800, 200),
        synthetic: SyntheticSource | None = None,
        **common: Any,
    ) -> None:
        super().__init__(root, num_classes, class_names, synthetic=synthetic, **common)
        if self.num_classes != 2:
            raise ValueError(
                f"DeepGlobe roads are binary: num_classes must be 2, got {num_classes}"
            )
        if layout not in ("auto", "list", "original"):
            raise ValueError(f"layout must be 'auto', 'list' or 'original', got {layout!r}")
        self.layout = layout
        self.lists = {"train": train_list, "val": val_list}
        self.separator = separator
        self.split_seed = int(split_seed)
        self.split_sizes = [int(n) for n in split_sizes]
        if self.synthetic is not None:  # generated data is split as it was generated, all of it
            self.split_sizes = list(self.synthetic.split_sizes)

    @property
    def download_name(self) -> str:
        """PaddleSeg's MiniDeepGlobe comes with list files; the original release without."""
        return "deepglobe" if self.layout == "original" else "mini_deepglobe"

    def resolved_layout(self) -> str:
        if self.layout != "auto":
            return self.layout
        return "list" if (self.root / self.lists["train"]).is_file() else "original"

    def scan_samples(self, split: str) -> tuple[list[Sample], list[Problem]]:
        if self.resolved_layout() == "list":
            return parse_list_file(self.root / self.lists[split], self.root, self.separator)
        train, val = seeded_split(original_pairs(self.root), self.split_sizes, self.split_seed)
        return (train if split == "train" else val), []
