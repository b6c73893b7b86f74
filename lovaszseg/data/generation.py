"""What the synthetic generators share: difficulty presets overridden by knobs, a random stream
per sample, smooth noise, and writing images and lists in the formats the real datasets use."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image


def merge_knobs(presets: Mapping[str, Mapping[str, Any]], settings: Mapping[str, Any]) -> dict:
    """Difficulty preset named by `settings["difficulty"]`, overridden by any knob in `settings`
    that is not None (the configs list every knob as null, so Hydra overrides need no `+`)."""
    name = settings.get("difficulty") or "easy"
    if name not in presets:
        raise ValueError(f"unknown difficulty {name!r}; expected one of {sorted(presets)}")
    knobs = dict(presets[name])
    for key, value in settings.items():
        if key in knobs and value is not None:
            knobs[key] = tuple(value) if isinstance(knobs[key], tuple) else value
    for key, value in knobs.items():
        numbers = value if isinstance(value, tuple) else (value,)
        if isinstance(value, tuple) and (len(value) != 2 or value[0] > value[1]):
            raise ValueError(f"synthetic.{key} must be a [min, max] pair, got {list(value)}")
        like = presets[name][key]
        if any(
            not isinstance(n, int | float) or isinstance(n, bool) != isinstance(like, bool)
            for n in numbers
        ):
            raise ValueError(f"synthetic.{key} must be like {like!r}, got {value!r}")
        if any(n < 0 for n in numbers):
            raise ValueError(f"synthetic.{key} must not be negative, got {value!r}")
    return knobs


def check_keys(settings: Mapping[str, Any], allowed: set[str], where: str) -> None:
    """Reject typos in generator settings instead of silently ignoring them."""
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ValueError(
            f"unknown {where} setting(s) {unknown}; expected some of {sorted(allowed)}"
        )


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
