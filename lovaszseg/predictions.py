"""Prediction PNGs for ``lovaszseg.eval save_predictions=true``: one palette image per input.

Palette PNGs keep the class index as the pixel value (so they can be re-scored) while showing
colours in any viewer; the palette is the usual Pascal VOC one (class 1 of a binary task shows
as dark red, 255 as white).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from PIL import Image


def voc_palette() -> list[int]:
    """The Pascal VOC colour map: bits of the class index spread over R, G and B."""
    palette = []
    for index in range(256):
        red = green = blue = 0
        value = index
        for shift in range(7, -1, -1):
            red |= ((value >> 0) & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        palette.extend((red, green, blue))
    palette[255 * 3 : 256 * 3] = [255, 255, 255]
    return palette


def save_label_png(labels: np.ndarray, path: Path) -> None:
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(voc_palette())
    image.save(path)


class PredictionWriter(pl.Callback):
    """Saves ``<out_dir>/<name>.png`` for every validated image (names from the batch)."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, labels in zip(batch["name"], outputs["preds"].cpu().numpy(), strict=True):
            save_label_png(labels, self.out_dir / f"{Path(name).stem}.png")
