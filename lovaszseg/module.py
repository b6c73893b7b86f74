"""The LightningModule: one segmentation network trained with a composite loss, scored by IoU.

Binary tasks (roads) use ONE logit channel, as PaddleSeg does for BCE and the Lovász hinge; they are
still scored as 2-class IoU (background and foreground), and mIoU is the mean of both, which is
the number PaddleSeg reports. IoU comes from torchmetrics, so it is synced across DDP ranks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import nn
from torchmetrics.classification import MulticlassJaccardIndex

from lovaszseg.inference.tiling import pad_to_multiple
from lovaszseg.models.factory import without_download
from lovaszseg.objectives.compose import TASKS, CompositeLoss

CHECKPOINT_KEY = "lovaszseg"


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the message names the step and every term's value."""


def output_channels(task: str, num_classes: int) -> int:
    """One logit for binary tasks, one per class otherwise."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return 1 if task == "binary" else num_classes


def metric_name(class_name: str) -> str:
    """``val/IoU_<class>`` keys without spaces, so they are valid CSV / W&B column names."""
    return "val/IoU_" + class_name.strip().replace(" ", "_")


class SegmentationModule(pl.LightningModule):
    """Trains ``net`` with ``loss``; validation records mIoU and per-class IoU per epoch.

    ``net_config`` (the resolved model config, including ``classes``) is stored in every
    checkpoint with the task and class names, so ``lovaszseg.eval`` can rebuild the network from
    the checkpoint alone.
    """

    def __init__(
        self,
        net: nn.Module,
        task: str,
        class_names: Sequence[str],
        ignore_index: int = 255,
        loss: CompositeLoss | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        net_config: dict[str, Any] | None = None,
        pad_multiple: int = 32,
    ) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if task == "binary" and len(class_names) != 2:
            raise ValueError(
                f"a binary task needs exactly 2 classes (background, foreground), "
                f"got {len(class_names)}: {list(class_names)}"
            )
        if loss is not None and loss.task != task:
            raise ValueError(f"loss task {loss.task!r} does not match the module task {task!r}")
        self.net = net
        self.task = task
        self.class_names = list(class_names)
        self.ignore_index = ignore_index
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.net_config = net_config
        self.pad_multiple = pad_multiple
        self.val_iou = MulticlassJaccardIndex(
            num_classes=len(self.class_names),
            average="none",
            ignore_index=ignore_index,
            zero_division=math.nan,
        )
        self.history: list[dict[str, Any]] = []
        self.last_val: dict[str, Any] | None = None
        self.fit_time_before_s = 0.0
        self._fit_started_at: float | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits at the input resolution; inputs are zero-padded to the network's stride first."""
        height, width = images.shape[-2:]
        return self.net(pad_to_multiple(images, self.pad_multiple))[..., :height, :width]

    def predict_labels(self, logits: torch.Tensor) -> torch.Tensor:
        """Class index per pixel: logit > 0 for binary, argmax otherwise."""
        if self.task == "binary":
            return (logits[:, 0] > 0).long()
        return logits.argmax(dim=1)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if self.loss is None:
            raise RuntimeError("SegmentationModule was built without a loss; it cannot train")
        logits = self(batch["image"])
        out = self.loss(logits, batch["mask"], epoch=self.current_epoch)
        self._stop_if_not_finite(out.total, out.terms)
        self.log("loss", out.total, prog_bar=True, logger=False, batch_size=logits.shape[0])
        logged = {"train/loss": out.total} | {f"train/loss_{n}": v for n, v in out.terms.items()}
        self.log_dict(
            logged, on_step=False, on_epoch=True, sync_dist=True, batch_size=logits.shape[0]
        )
        return out.total

    def _stop_if_not_finite(self, total: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
        """Stop every rank together (no DDP hang) before the bad step can reach a checkpoint."""
        bad = not bool(torch.isfinite(total))
        if not self.trainer.strategy.reduce_boolean_decision(bad, all=False):
            return
        values = ", ".join(f"{name}={value.item():.6g}" for name, value in terms.items())
        where = "this rank" if bad else "another rank"
        raise NonFiniteLossError(
            f"non-finite loss on {where} at global step {self.global_step} "
            f"(epoch {self.current_epoch}): total={total.item():.6g}; terms: {values}. "
            "The last good checkpoint is checkpoints/last.ckpt; lower the learning rate or check "
            "the data before resuming."
        )

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        logits = self(batch["image"])
        preds = self.predict_labels(logits)
        self.val_iou.update(preds, batch["mask"])
        if self.loss is not None:
            out = self.loss(logits, batch["mask"], epoch=self.current_epoch)
            self.log("val/loss", out.total, sync_dist=True, batch_size=logits.shape[0])
        return {"preds": preds}

    def on_validation_epoch_end(self) -> None:
        per_class = self.val_iou.compute()
        self.val_iou.reset()
        miou = torch.nanmean(per_class)
        self.log("val/mIoU", miou, prog_bar=True, sync_dist=True)
        for name, iou in zip(self.class_names, per_class, strict=True):
            self.log(metric_name(name), iou, sync_dist=True)
        self.last_val = {
            "epoch": self.current_epoch,
            "val/mIoU": _finite_or_none(miou),
            "per_class_iou": {
                name: _finite_or_none(iou)
                for name, iou in zip(self.class_names, per_class, strict=True)
            },
        }
        if self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            self.history = [h for h in self.history if h["epoch"] != self.current_epoch]
            self.history.append(self.last_val)

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise RuntimeError("SegmentationModule was built without an optimizer; it cannot train")
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(
            optimizer=optimizer, total_iters=int(self.trainer.estimated_stepping_batches)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_fit_start(self) -> None:
        if self.loss is not None:
            self.loss.check_schedule(self.trainer.max_epochs)
        self._fit_started_at = time.monotonic()

    def fit_time_s(self) -> float:
        """Training wall time summed over the original run and every resume."""
        running = 0.0 if self._fit_started_at is None else time.monotonic() - self._fit_started_at
        return self.fit_time_before_s + running

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "task": self.task,
            "class_names": self.class_names,
            "ignore_index": self.ignore_index,
            "net_config": self.net_config,
            "history": self.history,
            "fit_time_s": self.fit_time_s(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get(CHECKPOINT_KEY, {})
        self.history = list(saved.get("history", []))
        self.fit_time_before_s = float(saved.get("fit_time_s", 0.0))

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any], source: str) -> SegmentationModule:
        """Rebuild an evaluation-ready module (network, task, classes) from a training checkpoint."""
        saved = checkpoint.get(CHECKPOINT_KEY)
        if not saved or not saved.get("net_config"):
            raise ValueError(
                f"{source}: not a lovaszseg training checkpoint (no '{CHECKPOINT_KEY}' entry with "
                "the network config)"
            )
        module = cls(
            net=instantiate(without_download(saved["net_config"])),
            task=saved["task"],
            class_names=saved["class_names"],
            ignore_index=saved["ignore_index"],
            net_config=saved["net_config"],
        )
        module.load_net_weights(checkpoint["state_dict"], source=source)
        module.history = list(saved.get("history", []))
        return module

    def load_net_weights(self, state_dict: dict[str, torch.Tensor], source: str) -> None:
        """Load the network's weights only (``net.*``), refusing any that do not fit exactly."""
        net_state = {
            k.removeprefix("net."): v for k, v in state_dict.items() if k.startswith("net.")
        }
        if not net_state:
            raise ValueError(f"{source}: the checkpoint holds no 'net.*' weights")
        try:
            self.net.load_state_dict(net_state)
        except RuntimeError as err:
            raise ValueError(
                f"{source}: weights do not fit this model; was it trained with the same model "
                f"and task? ({err})"
            ) from err


def load_checkpoint(path: str) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError as err:
        raise ValueError(f"checkpoint not found: {path}") from err


def _finite_or_none(value: torch.Tensor) -> float | None:
    """JSON has no NaN: classes absent from both prediction and ground truth become null."""
    number = float(value)
    return number if math.isfinite(number) else None
