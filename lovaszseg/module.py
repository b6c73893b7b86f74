"""The LightningModule: one segmentation network trained with a composite loss, scored by IoU.

Binary tasks (roads) use ONE logit channel, as PaddleSeg does for BCE and the Lovász hinge; they are
still scored as 2-class IoU (background and foreground), and mIoU is the mean of both, which is
the number PaddleSeg reports. IoU comes from torchmetrics, so it is synced across DDP ranks.

The module is built from ``conf/module`` by ``_target_`` and builds its parts itself from their
configs (``_recursive_: false``): the network's config is what every checkpoint must carry to
rebuild it, so ``SegmentationModule.load_from_checkpoint("best.ckpt")`` works as in any Lightning
project. Checkpoints are unpickled with ``weights_only=True``: a file holding anything but
tensors and plain values (which could run code when unpickled) is refused unless trusted.
"""

from __future__ import annotations

import io
import math
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn
from torchmetrics.classification import MulticlassJaccardIndex

from lovaszseg.callbacks.precise_bn import batchnorm_layers
from lovaszseg.inference.tiling import pad_to_multiple
from lovaszseg.models.factory import without_download
from lovaszseg.objectives.compose import TASKS, CompositeLoss, output_channels
from lovaszseg.runs import contract

CHECKPOINT_KEY = "lovaszseg"
TRUST_HINT = "trust_checkpoint=true"
"""The override (eval, predict, export, train's init_from) that opts in to a full unpickle."""

__all__ = ["SegmentationModule", "load_checkpoint", "output_channels"]


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the message names the step and every term's value."""


class UntrustedCheckpointError(ValueError):
    """The checkpoint holds objects that only a full (code-running) unpickle can restore."""


def _plain(value: Any) -> Any:
    """OmegaConf containers as plain Python, so checkpoints hold only plain values."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _built(part: Any) -> Any:
    """A part given as a config (``_target_`` mapping) instantiated; an object kept as it is."""
    if isinstance(part, Mapping):  # DictConfig too; an empty one (scheduler=constant) is none
        return instantiate(part) if part else None
    return part


class SegmentationModule(pl.LightningModule):
    """Trains ``net`` with ``loss``; validation records mIoU and per-class IoU per epoch.

    ``net``, ``loss``, ``optimizer`` and ``scheduler`` are objects or their configs (a
    ``_target_`` mapping, built here). The network's config, the task and the class names are the
    module's hyperparameters, saved in every checkpoint (the network's without a pretrained-weights
    download: the checkpoint holds every weight), which is what ``load_from_checkpoint`` rebuilds
    an evaluation-ready module from. A network given as an object needs ``net_config`` for that.
    """

    def __init__(
        self,
        net: nn.Module | Mapping[str, Any],
        task: str,
        class_names: Sequence[str],
        ignore_index: int = 255,
        loss: CompositeLoss | Mapping[str, Any] | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | Mapping[str, Any] | None = None,
        scheduler: Callable[..., Any] | Mapping[str, Any] | None = None,
        net_config: Mapping[str, Any] | None = None,
        pad_multiple: int = 32,
    ) -> None:
        super().__init__()
        class_names = list(_plain(class_names))
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if task == "binary" and len(class_names) != 2:
            raise ValueError(
                f"the loss is binary (one logit channel) but the data has {len(class_names)} "
                f"classes ({', '.join(class_names[:4])}{', ...' if len(class_names) > 4 else ''});"
                " use a multi-class loss for this data: loss=ce, lovasz_softmax, "
                "lovasz_softmax_ce or finetune_softmax"
            )
        if len(class_names) < 2:
            raise ValueError(f"the data needs at least 2 classes, got {class_names}")
        if isinstance(net, Mapping):  # DictConfig too
            net_config = _plain(net)
            net = instantiate(net_config)
        loss = _built(loss)
        if loss is not None and loss.task != task:
            raise ValueError(f"loss task {loss.task!r} does not match the module task {task!r}")
        self.net = net
        self.task = task
        self.class_names = class_names
        self.ignore_index = int(ignore_index)
        self.loss = loss
        self.optimizer_factory = _built(optimizer)
        self.scheduler_factory = _built(scheduler)
        self.net_config = None if net_config is None else dict(_plain(net_config))
        self.pad_multiple = int(pad_multiple)
        if self.net_config is not None:
            self.save_hyperparameters(
                {
                    "net": without_download(self.net_config),
                    "task": task,
                    "class_names": self.class_names,
                    "ignore_index": self.ignore_index,
                    "pad_multiple": self.pad_multiple,
                },
                logger=False,  # the run logs its whole config; this would replace hparams.yaml
            )
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
        self.checkpoint_epoch: int | None = None
        """The epoch of the checkpoint this module was loaded from, if any."""

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
            self.log(contract.VAL_LOSS, out.total, sync_dist=True, batch_size=logits.shape[0])
        return {"preds": preds}

    def on_validation_epoch_end(self) -> None:
        per_class = self.val_iou.compute()
        self.val_iou.reset()
        miou = torch.nanmean(per_class)
        self.log(contract.VAL_MIOU, miou, prog_bar=True, sync_dist=True)
        for name, iou in zip(self.class_names, per_class, strict=True):
            self.log(contract.class_iou_key(name), iou, sync_dist=True)
        self.last_val = {
            contract.EPOCH: self.current_epoch,
            contract.VAL_MIOU: _finite_or_none(miou),
            contract.PER_CLASS_IOU: {
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

    def setup(self, stage: str) -> None:
        global_batch = getattr(self.trainer.datamodule, "batch_size", None)
        if stage == "fit" and global_batch is not None:
            self.check_batchnorm_batch(global_batch, self.trainer.world_size)

    def check_batchnorm_batch(self, global_batch: int, world_size: int) -> None:
        """BatchNorm cannot train on one sample per process (no variance within the batch).
        Training asks before Lightning starts the other processes; ``setup`` asks again for
        callers that fit the module themselves."""
        per_process = global_batch // world_size
        if per_process >= 2 or not batchnorm_layers(self.net):
            return
        raise ValueError(
            f"data.batch_size={global_batch} is the global batch: over {world_size} "
            f"process(es) each trains on {per_process} sample(s), and the network's BatchNorm "
            f"needs at least 2; use data.batch_size={2 * world_size} or more"
        )

    def on_fit_start(self) -> None:
        if self.loss is not None:
            self.loss.check_schedule(self.trainer.max_epochs)
        self._fit_started_at = time.monotonic()

    def fit_time_s(self) -> float:
        """Training wall time summed over the original run and every resume."""
        running = 0.0 if self._fit_started_at is None else time.monotonic() - self._fit_started_at
        return self.fit_time_before_s + running

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {"history": self.history, "fit_time_s": self.fit_time_s()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get(CHECKPOINT_KEY, {})
        self.history = list(saved.get("history", []))
        self.fit_time_before_s = float(saved.get("fit_time_s", 0.0))
        self.checkpoint_epoch = checkpoint.get("epoch")

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | Path | IO[bytes],
        map_location: Any = "cpu",
        hparams_file: str | Path | None = None,
        strict: bool | None = None,
        weights_only: bool | None = True,
        **kwargs: Any,
    ) -> SegmentationModule:
        """Lightning's ``load_from_checkpoint``, safe by default (``weights_only=True``; pass
        ``weights_only=False`` only for a trusted file) and with clear errors, on the CPU unless
        told otherwise. A checkpoint written before the module saved its hyperparameters still
        loads: its init arguments are read from the project's own entry."""
        if isinstance(checkpoint_path, str | Path):
            source, data = str(checkpoint_path), _read_bytes(str(checkpoint_path))
        else:  # a file object
            source, data = (
                str(getattr(checkpoint_path, "name", "checkpoint")),
                checkpoint_path.read(),
            )
        checkpoint = _unpickle(data, source, trusted=weights_only is False)
        if not checkpoint.get(cls.CHECKPOINT_HYPER_PARAMS_KEY) and hparams_file is None:
            kwargs = {**_init_arguments_of_old_checkpoint(checkpoint, source), **kwargs}
        return super().load_from_checkpoint(
            io.BytesIO(data),
            map_location=map_location,
            hparams_file=hparams_file,
            strict=strict,
            weights_only=weights_only,
            **kwargs,
        )

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


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as err:
        raise ValueError(f"checkpoint not found: {path}") from err
    except OSError as err:
        raise ValueError(f"checkpoint {path} cannot be read ({err.strerror or err})") from err


def _unpickle(data: bytes, source: str, trusted: bool) -> dict[str, Any]:
    """The checkpoint in ``data``; tensors and plain values only unless ``trusted``."""
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as err:
        if trusted or "weights_only" not in str(err).lower().replace(" ", "_"):
            raise ValueError(f"checkpoint {source} cannot be read ({err})") from err
        found = [line.strip() for line in str(err).splitlines() if "Unsupported" in line]
        what = found[0].removeprefix("WeightsUnpickler error: ") if found else "not allowed"
        what = what.split(" was not an allowed")[0]
        raise UntrustedCheckpointError(
            f"checkpoint {source} holds objects other than tensors and plain values, which "
            f"could run code when unpickled, so it was not loaded ({what}). If you trust the "
            f"file (you or your team wrote it), load it with {TRUST_HINT} (in Python: "
            "weights_only=False)"
        ) from err
    except (RuntimeError, EOFError) as err:  # not a torch.save archive, or a torn one
        raise ValueError(
            f"checkpoint {source} is not a complete checkpoint written by torch.save ({err})"
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"checkpoint {source} is not a training checkpoint (no state_dict)")
    return checkpoint


def load_checkpoint(path: str, trusted: bool = False) -> dict[str, Any]:
    """The checkpoint at ``path``, unpickled safely unless ``trusted``; ValueError naming the
    file (and, for an untrusted pickle, the opt-in) when it cannot be."""
    return _unpickle(_read_bytes(path), path, trusted)


def _init_arguments_of_old_checkpoint(checkpoint: dict[str, Any], source: str) -> dict[str, Any]:
    """The init arguments that checkpoints written before ``save_hyperparameters`` kept in
    ``CHECKPOINT_KEY`` (the network config, task, class names and ignore index)."""
    saved = checkpoint.get(CHECKPOINT_KEY) or {}
    if not saved.get("net_config"):
        raise ValueError(
            f"{source}: not a lovaszseg training checkpoint (no hyperparameters and no "
            f"'{CHECKPOINT_KEY}' entry with the network config)"
        )
    return {
        "net": without_download(saved["net_config"]),
        "task": saved["task"],
        "class_names": saved["class_names"],
        "ignore_index": saved["ignore_index"],
    }


def _finite_or_none(value: torch.Tensor) -> float | None:
    """JSON has no NaN: classes absent from both prediction and ground truth become null."""
    number = float(value)
    return number if math.isfinite(number) else None
