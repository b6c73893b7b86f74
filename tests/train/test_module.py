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

from lovaszseg.callbacks.results import ResultsWriter, best_and_final
from lovaszseg.loggers.csv import ResumableCSVLogger
from lovaszseg.module import NonFiniteLossError, SegmentationModule, load_checkpoint
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


def test_checkpoint_rebuilds_the_network_for_evaluation(tmp_path):
    torch.manual_seed(0)
    module = binary_module()
    fit(module, tmp_path, epochs=2)
    checkpoint = load_checkpoint(str(tmp_path / "checkpoints" / "last.ckpt"))
    rebuilt = SegmentationModule.from_checkpoint(checkpoint, source="last.ckpt")
    images = torch.randn(2, 3, 20, 28)
    module.eval()
    rebuilt.eval()
    assert rebuilt.loss is None and rebuilt.class_names == ["background", "road"]
    assert torch.equal(module(images), rebuilt(images))
    assert [h["epoch"] for h in rebuilt.history] == [0, 1]


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
    with pytest.raises(ValueError, match="exactly 2 classes"):
        SegmentationModule(net=nn.Identity(), task="binary", class_names=["a", "b", "c"])


def test_best_is_highest_miou_and_earliest_on_ties():
    history = [
        {"epoch": 0, "val/mIoU": 0.2},
        {"epoch": 1, "val/mIoU": 0.6},
        {"epoch": 2, "val/mIoU": 0.6},
        {"epoch": 3, "val/mIoU": 0.4},
    ]
    best, final = best_and_final(history)
    assert best["epoch"] == 1 and final["epoch"] == 3
    assert best_and_final([]) == (None, None)
