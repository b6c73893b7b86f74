"""Train / eval augmentation presets (PaddleSeg's recipes) as small albumentations classes.

Hydra builds them from `data.train_transform` / `data.eval_transform`, so a user changes the scale
grid or the normalisation from the command line. Both return `{"image": float32 [3,H,W],
"mask": uint8 [H,W]}` tensors.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np
from albumentations.pytorch import ToTensorV2


def scale_grid(scale_min: float, scale_max: float, scale_step: float) -> list[float]:
    """The scales PaddleSeg's ResizeStepScaling draws from: min, min+step, ..., max."""
    if not 0 < scale_min <= scale_max:
        raise ValueError(
            f"scale_min/scale_max must satisfy 0 < min <= max, got {scale_min}, {scale_max}"
        )
    if scale_step <= 0:
        return [scale_min] if scale_min == scale_max else [scale_min, scale_max]
    count = round((scale_max - scale_min) / scale_step)
    return [round(scale_min + i * scale_step, 6) for i in range(count + 1)]


class _Preset:
    """An albumentations pipeline whose random state can be re-seeded per DataLoader worker."""

    pipeline: A.Compose

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> dict:
        return self.pipeline(image=image, mask=mask)

    def reseed(self, seed: int) -> None:
        """Give this copy its own random stream (forked workers otherwise share one).

        One stream that every transform draws from in turn. albumentations' ``set_random_seed``
        gives each transform its own copy of the same stream instead, so their n-th draws are
        equal: reseeded per sample, a flip then came with a crop near the top (correlation
        -0.87), and it costs 13 times as much (370 µs against 28)."""
        self.pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))


class TrainPreset(_Preset):
    """Random rescale on a step grid, pad (image: mean, label: ignore), random crop, h-flip."""

    def __init__(
        self,
        crop_size: int,
        scale_min: float = 0.5,
        scale_max: float = 2.0,
        scale_step: float = 0.25,
        hflip: float = 0.5,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        ignore_index: int = 255,
        size_divisor: int = 32,
    ) -> None:
        crop_size = int(crop_size)
        if crop_size <= 0 or crop_size % size_divisor:
            raise ValueError(
                f"crop_size must be a positive multiple of the encoder stride {size_divisor}, "
                f"got {crop_size} (use 768 / 512 rather than PaddleSeg's 769 / 500)"
            )
        self.crop_size = crop_size
        self.scales = scale_grid(scale_min, scale_max, scale_step)
        rescale = A.OneOf(
            [A.RandomScale(scale_limit=(s - 1.0, s - 1.0), p=1.0) for s in self.scales], p=1.0
        )
        self.pipeline = A.Compose(
            [
                rescale,
                A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0),
                A.PadIfNeeded(
                    min_height=crop_size,
                    min_width=crop_size,
                    position="top_left",
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=0.0,  # the mean, after normalisation
                    fill_mask=ignore_index,
                ),
                A.RandomCrop(height=crop_size, width=crop_size),
                A.HorizontalFlip(p=hflip),
                ToTensorV2(),
            ]
        )


class EvalPreset(_Preset):
    """Normalise the whole image, padded (bottom/right) to at least `pad_to` when given.

    The padded pixels carry the ignore index, so metrics never count them. Padding to the
    network's stride is the model's own business (`SegmentationModule.forward`).
    """

    def __init__(
        self,
        pad_to: int | None = None,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        ignore_index: int = 255,
    ) -> None:
        steps = []
        if pad_to is not None:
            steps.append(
                A.PadIfNeeded(
                    min_height=int(pad_to),
                    min_width=int(pad_to),
                    position="top_left",
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=0.0,  # the mean, after normalisation
                    fill_mask=ignore_index,
                )
            )
        self.pipeline = A.Compose(
            [
                A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0),
                *steps,
                ToTensorV2(),
            ]
        )
