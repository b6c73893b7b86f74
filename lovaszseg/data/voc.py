"""Pascal VOC 2012 segmentation: `VOCdevkit/VOC2012`, 21 classes, palette PNG labels, 255 = void.

The training list is `ImageSets/Segmentation/train.txt` (1,464 images), or with `sbd: true` the
SBD-augmented `trainaug.txt` (10,582) whose labels live in `SegmentationClassAug/`, the layout
DeepLab and PaddleSeg use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lovaszseg.data.datamodule import SegmentationDataModule, SyntheticSource
from lovaszseg.data.files import Problem, Sample
from lovaszseg.data.voc_classes import VOC_CLASSES


def voc_label(raw: np.ndarray, sample: Sample) -> np.ndarray:
    """Palette indices are class indices; a colour-rendered label is refused, not guessed at."""
    if raw.ndim == 3:
        raise ValueError(
            f"label {sample.label} is an RGB image; VOC labels must be palette (or grey) PNGs "
            "holding class indices"
        )
    return raw


def parse_name_list(
    list_path: Path, images: Path, labels: Path
) -> tuple[list[Sample], list[Problem]]:
    """The samples an ImageSets list names (one image name per line), and its malformed lines."""
    if not list_path.is_file():
        raise ValueError(f"list file {list_path} does not exist")
    samples, problems = [], []
    for number, line in enumerate(list_path.read_text(encoding="utf-8").splitlines(), start=1):
        source, fields = f"{list_path}:{number}", line.split()
        if len(fields) > 1:
            problems.append(Problem(source, f"expected one image name, got {line.strip()!r}"))
        elif fields:
            name = fields[0]
            samples.append(Sample(name, images / f"{name}.jpg", labels / f"{name}.png", source))
    return samples, problems


class VOCSegmentationDataModule(SegmentationDataModule):
    """21-class Pascal VOC 2012, from `VOCdevkit/VOC2012` (or that folder itself)."""

    dataset_name = "Pascal VOC 2012"
    download_name = "voc2012"
    decode_label = staticmethod(voc_label)

    def __init__(
        self,
        root: str | Path,
        num_classes: int = 21,
        class_names: Sequence[str] = VOC_CLASSES,
        sbd: bool = False,
        synthetic: SyntheticSource | None = None,
        **common: Any,
    ) -> None:
        super().__init__(root, num_classes, class_names, synthetic=synthetic, **common)
        self.sbd = bool(sbd)

    @property
    def voc_dir(self) -> Path:
        """`root/VOCdevkit/VOC2012`, or `root` itself when it is the VOC2012 folder."""
        nested = self.root / "VOCdevkit" / "VOC2012"
        return nested if nested.is_dir() or not (self.root / "JPEGImages").is_dir() else self.root

    def scan_samples(self, split: str) -> tuple[list[Sample], list[Problem]]:
        augmented = self.sbd and split == "train"
        list_name = "trainaug.txt" if augmented else f"{split}.txt"
        labels = self.voc_dir / ("SegmentationClassAug" if augmented else "SegmentationClass")
        if augmented and not labels.is_dir():
            raise ValueError(
                f"sbd: true needs the SBD labels in {labels} (and {list_name}); "
                "set data.sbd=false to train on the 1,464 VOC images"
            )
        list_path = self.voc_dir / "ImageSets" / "Segmentation" / list_name
        return parse_name_list(list_path, self.voc_dir / "JPEGImages", labels)
