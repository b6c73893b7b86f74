"""How the synthetic generators draw and store a sample: a random stream per sample, smooth
noise, and images and labels written in the formats the real datasets use."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """An independent stream per sample, so any one sample is reproducible on its own."""
    return np.random.default_rng([int(seed), {"train": 0, "val": 1}[split], int(index)])


def save_jpeg(path: Path, rgb: np.ndarray, quality: int = 92) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f"could not write {path}")


def save_png(path: Path, values: np.ndarray, palette: list[int] | None = None) -> None:
    """An 8-bit grey PNG, or a palette PNG when `palette` is given (VOC's label format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(values.astype(np.uint8), mode="P" if palette else "L")
    if palette:
        image.putpalette(palette)
    image.save(path, optimize=False)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth random field in [0, 1]: a `cells`x`cells` grid of noise upsampled bicubically."""
    grid = rng.random((cells + 3, cells + 3)).astype(np.float32)
    field = cv2.resize(grid, (shape[1] + 64, shape[0] + 64), interpolation=cv2.INTER_CUBIC)
    field = field[32 : 32 + shape[0], 32 : 32 + shape[1]]
    lo, hi = float(field.min()), float(field.max())
    return (field - lo) / max(hi - lo, 1e-6)
