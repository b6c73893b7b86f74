"""The LightningModule, results.json and the resumable CSV logger, on tiny in-memory data."""

from __future__ import annotations

import csv
import json
from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn

from lovaszseg.callbacks.results import ResultsWriter
from lovaszseg.loggers.csv import ResumableCSVLogger
from lovaszseg.module import (
    CHECKPOINT_KEY,
    NonFiniteLossError,
    SegmentationModule,
    UntrustedCheckpointError,
    load_checkpoint,
)
from lovaszseg.objectives.compose import CompositeLoss, LossTerm
from lovaszseg.objectives.pixelwise import BinaryCrossEntropy, CrossEntropy
from tests.train.fake_data import StripesDataModule

NET_CONFIG = {"_target_": "torch.nn.Conv2d", "in_channels": 3, "out_channels": 1, "kernel_size": 1}


def binary_module(net: nn.Module | None = None, lr: float = 0.5) -> SegmentationModule:
    loss = CompositeLoss({"bce": LossTerm(BinaryCrossEntropy(255))}, task="binary")
    return SegmentationModule(
        net=net or nn.Conv2d(3, 1, 1),
        task="binary",
        class_names=["background", "road"],
        loss=loss,
        optimizer=partial(torch.optim.SGD, lr=lr),
        net_config=NET_CONFIG,
    )


def fit(module, tmp_path: Path, epochs: int, data=None) -> pl.Trainer:
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=ResumableCSVLogger(str(tmp_path)),
        callbacks=[
            ModelCheckpoint(tmp_path / "checkpoints", "last", enable_version_counter=False),
            ModelCheckpoint(
                tmp_path / "checkpoints",
                "best",
                monitor="val/mIoU",
                mode="max",
                enable_version_counter=False,
            ),
            ResultsWriter(tmp_path / "results.json", {"task": module.task, "seed": 7}),
        ],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    trainer.fit(module, datamodule=data or StripesDataModule(num_classes=2, batch_size=4))
    return trainer


def test_binary_fit_learns_and_writes_results_and_metrics(tmp_path):
    torch.manual_seed(0)
    fit(binary_module(), tmp_path, epochs=12)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "completed"
    assert (results["epochs"], results["seed"], results["world_size"]) == (12, 7, 1)
    assert results["final"]["epoch"] == 11
    assert set(results["final"]["per_class_iou"]) == {"background", "road"}
    assert results["best"]["val/mIoU"] >= results["final"]["val/mIoU"] > 0.95
    iou = results["final"]["per_class_iou"]
    assert results["final"]["val/mIoU"] == pytest.approx((iou["background"] + iou["road"]) / 2)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert {"train/loss", "train/loss_bce", "val/mIoU", "val/IoU_road", "epoch"} <= set(rows[0])
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file()


def test_multiclass_iou_skips_classes_absent_everywhere(tmp_path):
    torch.manual_seed(0)
    loss = CompositeLoss({"ce": LossTerm(CrossEntropy(255))}, task="multiclass")
    module = SegmentationModule(
        net=nn.Conv2d(3, 4, 1),
        task="multiclass",
        class_names=["a", "b", "c", "never"],
        loss=loss,
        optimizer=partial(torch.optim.Adam, lr=0.1),
    )
    data = StripesDataModule(num_classes=3, batch_size=4)
    data.num_classes = 3  # the stripes only ever show classes 0..2
    fit(module, tmp_path, epochs=15, data=data)
    final = json.loads((tmp_path / "results.json").read_text())["final"]
    assert final["per_class_iou"]["never"] is None
    present = [final["per_class_iou"][c] for c in "abc"]
    assert final["val/mIoU"] == pytest.approx(sum(present) / 3)
    assert final["val/mIoU"] > 0.9


class NaNAfter(nn.Module):
    """A 1x1 conv whose training-mode output turns NaN after ``good_calls`` calls."""

    def __init__(self, good_calls: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        self.good_calls = good_calls
        self.calls = 0

    def forward(self, x):
        out = self.conv(x)
        if self.training:
            self.calls += 1
            if self.calls > self.good_calls:
                return out * float("nan")
        return out


def test_non_finite_loss_stops_with_step_and_terms_and_keeps_last_checkpoint(tmp_path):
    module = binary_module(net=NaNAfter(good_calls=3))
    with pytest.raises(NonFiniteLossError, match=r"global step 3 \(epoch 1\).*terms: bce=nan"):
        fit(module, tmp_path, epochs=4)  # 2 batches per epoch: step 3 is epoch 1's 2nd batch
    last = load_checkpoint(str(tmp_path / "checkpoints" / "last.ckpt"))
    assert last["epoch"] == 0
    assert torch.isfinite(last["state_dict"]["net.conv.weight"]).all()
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "failed"
    assert "NonFiniteLossError" in results["error"]
    assert results["final"]["epoch"] == 0


def test_load_from_checkpoint_rebuilds_the_network_for_evaluation(tmp_path):
    torch.manual_seed(0)
    module = binary_module()
    fit(module, tmp_path, epochs=2)
    rebuilt = SegmentationModule.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    images = torch.randn(2, 3, 20, 28)
    module.eval()
    rebuilt.eval()
    assert rebuilt.loss is None and rebuilt.class_names == ["background", "road"]
    assert rebuilt.hparams["net"] == NET_CONFIG and rebuilt.checkpoint_epoch == 1
    assert torch.equal(module(images), rebuilt(images))
    assert [h["epoch"] for h in rebuilt.history] == [0, 1]


def test_a_checkpoint_written_before_the_hyperparameters_still_loads(tmp_path):
    """The old layout: no ``hyper_parameters``, the init arguments in the project's own entry."""
    torch.manual_seed(0)
    module = binary_module()
    fit(module, tmp_path, epochs=1)
    old = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    del old["hyper_parameters"]
    old[CHECKPOINT_KEY] = {
        "task": "binary",
        "class_names": ["background", "road"],
        "ignore_index": 255,
        "net_config": NET_CONFIG,
        "history": module.history,
        "fit_time_s": 1.0,
    }
    torch.save(old, tmp_path / "old.ckpt")
    rebuilt = SegmentationModule.load_from_checkpoint(tmp_path / "old.ckpt").eval()
    images = torch.randn(1, 3, 8, 8)
    assert torch.equal(rebuilt(images), module.eval()(images))
    assert rebuilt.task == "binary" and rebuilt.checkpoint_epoch == 0
    assert rebuilt.history == module.history
    del old[CHECKPOINT_KEY]["net_config"]
    torch.save(old, tmp_path / "foreign.ckpt")
    with pytest.raises(ValueError, match=r"foreign\.ckpt: not a lovaszseg training checkpoint"):
        SegmentationModule.load_from_checkpoint(tmp_path / "foreign.ckpt")


class RunsCodeWhenUnpickled:
    def __reduce__(self):
        return (print, ("this ran while the checkpoint was being loaded",))


def test_a_checkpoint_with_pickled_objects_is_refused_unless_trusted(tmp_path, capsys):
    module = binary_module()
    fit(module, tmp_path, epochs=1)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["extra"] = RunsCodeWhenUnpickled()
    torch.save(checkpoint, tmp_path / "sent.ckpt")
    with pytest.raises(UntrustedCheckpointError, match=r"sent\.ckpt .* trust_checkpoint=true"):
        SegmentationModule.load_from_checkpoint(tmp_path / "sent.ckpt")
    with pytest.raises(UntrustedCheckpointError, match=r"Unsupported global: GLOBAL print\)"):
        load_checkpoint(str(tmp_path / "sent.ckpt"))
    assert "this ran" not in capsys.readouterr().out
    trusted = SegmentationModule.load_from_checkpoint(tmp_path / "sent.ckpt", weights_only=False)
    assert trusted.class_names == ["background", "road"]
    assert "this ran" in capsys.readouterr().out


def test_a_truncated_or_missing_checkpoint_is_named(tmp_path):
    module = binary_module()
    fit(module, tmp_path, epochs=1)
    whole = (tmp_path / "checkpoints" / "last.ckpt").read_bytes()
    (tmp_path / "torn.ckpt").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=r"torn\.ckpt is not a complete checkpoint"):
        SegmentationModule.load_from_checkpoint(tmp_path / "torn.ckpt")
    with pytest.raises(ValueError, match=r"checkpoint not found: .*absent\.ckpt"):
        SegmentationModule.load_from_checkpoint(tmp_path / "absent.ckpt")


class ShapeRecorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, int]] = []

    def forward(self, x):
        self.seen.append(tuple(x.shape[-2:]))
        return x[:, :1]


def test_forward_pads_to_stride_and_crops_back():
    recorder = ShapeRecorder()
    module = SegmentationModule(net=recorder, task="binary", class_names=["bg", "fg"])
    images = torch.randn(1, 3, 33, 70)
    out = module(images)
    assert recorder.seen == [(64, 96)]
    assert torch.equal(out, images[:, :1])


def test_init_weights_that_do_not_fit_are_refused(tmp_path):
    module = binary_module()
    fit(module, tmp_path, epochs=1)
    state = load_checkpoint(str(tmp_path / "checkpoints" / "last.ckpt"))["state_dict"]
    wider = binary_module(net=nn.Conv2d(3, 5, 1))
    with pytest.raises(ValueError, match="do not fit this model"):
        wider.load_net_weights(state, source="run/last.ckpt")
    with pytest.raises(ValueError, match=r"holds no 'net\.\*' weights"):
        wider.load_net_weights({"other.weight": torch.zeros(1)}, source="x.ckpt")


def test_binary_task_needs_two_classes():
    with pytest.raises(ValueError, match=r"the loss is binary .* 3 classes"):
        SegmentationModule(net=nn.Identity(), task="binary", class_names=["a", "b", "c"])
