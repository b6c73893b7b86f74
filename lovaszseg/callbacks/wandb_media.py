"""W&B extras beyond scalars: image / ground-truth / prediction overlays and a per-class IoU table.

Scalars and the config reach W&B through Lightning's ``WandbLogger``; this callback adds what a
dashboard needs to *see* a loss's effect (thin roads kept or lost). It does nothing when no
``WandbLogger`` is attached, so it can stay in the default callback list.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger


def _display_image(image: torch.Tensor) -> np.ndarray:
    """Normalised [3,H,W] float -> uint8 HWC, min-max scaled (the normalisation is data-specific)."""
    image = image.detach().float().cpu()
    low, high = image.min(), image.max()
    scaled = (image - low) / (high - low).clamp_min(1e-8)
    return (scaled.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def media_due(
    epoch: int, every_n_epochs: int, check_val_every_n_epoch: int | None, max_epochs: int | None
) -> bool:
    """Whether the validation that ends ``epoch`` (from 0) logs media: the first validation at
    or after every ``every_n_epochs``-th epoch, and the last epoch's. A run validated every k
    epochs thus logs every ``every_n_epochs`` epochs too, not only at their common multiples."""
    done = epoch + 1
    since_last_validation = check_val_every_n_epoch or 1  # None: validated by steps, each epoch
    crossed = done // every_n_epochs > (done - since_last_validation) // every_n_epochs
    last = max_epochs is not None and max_epochs > 0 and done >= max_epochs  # -1: no end
    return crossed or last


class WandbMedia(pl.Callback):
    """At the validations ``media_due`` picks, log ``max_images`` overlays and the IoU table."""

    def __init__(self, every_n_epochs: int = 5, max_images: int = 4) -> None:
        if every_n_epochs < 1 or max_images < 0:
            raise ValueError(
                f"WandbMedia needs every_n_epochs >= 1 and max_images >= 0, got "
                f"{every_n_epochs} and {max_images}"
            )
        self.every_n_epochs = every_n_epochs
        self.max_images = max_images
        self._pending: list[Any] = []

    @staticmethod
    def _wandb_loggers(trainer: pl.Trainer) -> list[WandbLogger]:
        return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]

    def _due(self, trainer: pl.Trainer) -> bool:
        return (
            trainer.is_global_zero
            and not trainer.sanity_checking
            and bool(self._wandb_loggers(trainer))
            and media_due(
                trainer.current_epoch,
                self.every_n_epochs,
                trainer.check_val_every_n_epoch,
                trainer.max_epochs,
            )
        )

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        room = self.max_images - len(self._pending)
        if room <= 0 or not self._due(trainer):
            return
        import wandb

        labels = dict(enumerate(pl_module.class_names)) | {pl_module.ignore_index: "ignore"}
        for i in range(min(room, batch["image"].shape[0])):
            masks = {
                "prediction": {
                    "mask_data": outputs["preds"][i].cpu().numpy(),
                    "class_labels": labels,
                },
                "ground_truth": {
                    "mask_data": batch["mask"][i].cpu().numpy(),
                    "class_labels": labels,
                },
            }
            caption = batch["name"][i] if "name" in batch else str(i)
            self._pending.append(
                wandb.Image(_display_image(batch["image"][i]), masks=masks, caption=caption)
            )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._due(trainer) or pl_module.last_val is None:
            self._pending = []
            return
        import wandb

        rows = [[name, iou] for name, iou in pl_module.last_val["per_class_iou"].items()]
        media: dict[str, Any] = {
            "val/per_class_iou": wandb.Table(columns=["class", "IoU"], data=rows)
        }
        if self._pending:
            media["val/examples"] = self._pending
        for logger in self._wandb_loggers(trainer):
            logger.experiment.log(media | {"epoch": trainer.current_epoch})
        self._pending = []
