"""Prediction files for ``lovaszseg.eval save_predictions=true``, one per validated image.

``predictions/<name>.png`` holds the predicted labels in the dataset's encoding (re-scorable);
``overlays/<name>.png`` shows image | truth | prediction side by side, to look at offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from lovaszseg.inference.overlay import denormalise, panel, save_label_png, save_rgb_png


class PredictionWriter(pl.Callback):
    """Saves label PNGs and overlay panels under ``out_dir`` (names from the batch)."""

    def __init__(
        self, out_dir: str | Path, mean: Sequence[float], std: Sequence[float], alpha: float = 0.5
    ) -> None:
        self.out_dir = Path(out_dir)
        self.mean = list(mean)
        self.std = list(std)
        self.alpha = alpha

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        predictions = outputs["preds"].cpu().numpy()
        truths = batch["mask"].cpu().numpy()
        for name, image, truth, labels in zip(
            batch["name"], batch["image"], truths, predictions, strict=True
        ):
            stem = Path(name).stem
            save_label_png(labels, self.out_dir / "predictions" / f"{stem}.png", pl_module.task)
            pixels = denormalise(image, self.mean, self.std)
            save_rgb_png(
                panel(pixels, truth, labels, self.alpha), self.out_dir / "overlays" / f"{stem}.png"
            )
