"""The IoU of thin roads apart from wide ones: where an IoU surrogate should make a difference.

A one-pixel error costs a 2 px road half its IoU and a 12 px road a sixth; BCE weighs every
pixel alike, the Lovász hinge weighs errors by what they cost the IoU. So the road IoU is split
by road width. Each pixel belongs to the zone of the road drawn nearest to it — thin if that road
is at most ``thin_max`` px wide, wide otherwise — read from the width map beside each label
(:func:`lovaszseg.data.files.width_map_path`; the synthetic roads write it exactly: the pen width
each road was drawn with). A zone's IoU is the road IoU counted inside the zone,
``|P ∩ T| / |P ∪ T|``: its truth is exactly the thin (or wide) road pixels, and a false positive
counts against the roads it lies nearest to. Pixels labelled ``ignore_index`` count nowhere.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from lovaszseg.data.files import read_width_map, width_map_path

ZONES = ("thin", "wide")


def zone_counts(
    preds: torch.Tensor,
    target: torch.Tensor,
    nearest_width: torch.Tensor,
    thin_max: int = 3,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Road intersection and union inside the thin and the wide zone: float64 ``[[I, U], [I, U]]``.

    ``preds`` and ``target`` hold 0 / 1 class indices (``target`` may hold ``ignore_index``),
    ``nearest_width`` the width of the nearest road per pixel (0: no road in the image, which
    puts the pixel in neither zone); all three share one shape.
    """
    if not preds.shape == target.shape == nearest_width.shape:
        raise ValueError(
            f"preds {tuple(preds.shape)}, target {tuple(target.shape)} and width map "
            f"{tuple(nearest_width.shape)} must have the same shape"
        )
    valid = target != ignore_index
    predicted = (preds == 1) & valid
    truth = (target == 1) & valid
    width = nearest_width.to(preds.device)
    zones = ((width > 0) & (width <= thin_max), width > thin_max)
    counts = [
        [float((predicted & truth & zone).sum()), float(((predicted | truth) & zone).sum())]
        for zone in zones
    ]
    return torch.tensor(counts, dtype=torch.float64)


def zone_iou(counts: torch.Tensor) -> dict[str, float]:
    """``{"thin": IoU, "wide": IoU}`` from summed counts; NaN for a zone with an empty union."""
    return {
        zone: float(inter / union) if union > 0 else math.nan
        for zone, (inter, union) in zip(ZONES, counts.tolist(), strict=True)
    }


class RoadWidthIoU(pl.Callback):
    """Logs ``val/IoU_road_thin`` and ``val/IoU_road_wide`` every validation, beside the classes.

    Needs a width map beside every validation label (``data=synthetic_roads`` writes them);
    counts are summed over every rank before the IoU is taken, as torchmetrics does for the
    classes.
    """

    def __init__(self, thin_max: int = 3) -> None:
        if int(thin_max) < 1:
            raise ValueError(f"thin_max must be a width of at least 1 px, got {thin_max}")
        self.thin_max = int(thin_max)
        self.width_paths: dict[str, Path] = {}
        self.cache: dict[str, torch.Tensor] = {}
        self.counts = torch.zeros(2, 2, dtype=torch.float64)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        dataset = getattr(trainer.datamodule, "val_dataset", None)
        if dataset is None:
            raise ValueError("RoadWidthIoU needs a datamodule with a val_dataset of road samples")
        paths = {s.name: width_map_path(s.label) for s in dataset.samples}
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if missing:
            raise ValueError(
                f"RoadWidthIoU: no width map {missing[0]} (and {len(missing) - 1} more); width "
                "maps are written by data=synthetic_roads (a root it did not generate is read as "
                "it is: delete it to have it generated)"
            )
        self.width_paths = paths

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.counts = torch.zeros(2, 2, dtype=torch.float64)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: dict[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        preds = outputs["preds"]
        for i, name in enumerate(batch["name"]):
            width = self._width(name)
            height, cols = width.shape
            self.counts += zone_counts(
                preds[i, :height, :cols],
                batch["mask"][i, :height, :cols],
                width,
                self.thin_max,
                pl_module.ignore_index,
            )

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        counts = trainer.strategy.reduce(self.counts.to(pl_module.device), reduce_op="sum")
        for zone, iou in zone_iou(counts.cpu()).items():
            pl_module.log(f"val/IoU_road_{zone}", iou)

    def _width(self, name: str) -> torch.Tensor:
        if name not in self.cache:
            self.cache[name] = torch.from_numpy(read_width_map(self.width_paths[name]).copy())
        return self.cache[name]
