"""The per-epoch log line counts epochs as people do: 1 to max_epochs, the best one too."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from lovaszseg.callbacks.epoch_log import epoch_line


def line_after(current_epoch: int, max_epochs: int | None, history: list[dict]) -> str:
    trainer = SimpleNamespace(
        current_epoch=current_epoch,
        max_epochs=max_epochs,
        global_step=2 * (current_epoch + 1),
        callback_metrics={
            "train/loss": torch.tensor(0.5),
            "train/loss_bce": torch.tensor(0.25),
            "val/loss": torch.tensor(0.75),
            "val/mIoU": torch.tensor(history[-1]["val/mIoU"]),
        },
    )
    module = SimpleNamespace(history=history, fit_time_s=lambda: 12.0)
    return epoch_line(trainer, module, started_at=None)


def test_the_last_of_three_epochs_reads_3_of_3_and_the_best_epoch_counts_from_1():
    history = [{"epoch": 0, "val/mIoU": 0.5}, {"epoch": 1, "val/mIoU": 0.7}]
    history.append({"epoch": 2, "val/mIoU": 0.6})
    assert line_after(2, 3, history) == (
        "epoch 3/3 step 6 | train/loss 0.5000 (bce 0.2500)"
        " | val/loss 0.7500 val/mIoU 0.6000 best 0.7000 @ epoch 2 | run 12.0 s"
    )


def test_a_one_epoch_run_reads_1_of_1():
    assert line_after(0, 1, [{"epoch": 0, "val/mIoU": 0.5}]).startswith("epoch 1/1 step 2 |")


def test_a_run_without_an_epoch_limit_shows_no_total():
    assert line_after(4, -1, [{"epoch": 4, "val/mIoU": 0.5}]).startswith("epoch 5 step 10 |")


def test_the_iou_table_names_epochs_from_1_as_the_log_lines_do():
    from rich.console import Console

    from lovaszseg.runs.iou_table import iou_table

    best = {"epoch": 1, "val/mIoU": 0.7, "per_class_iou": {"background": 0.9, "road": 0.5}}
    final = {"epoch": 2, "val/mIoU": 0.6, "per_class_iou": {"background": 0.9, "road": None}}
    console = Console(width=120, record=True)
    console.print(iou_table("run", {"best": best, "final": final}))
    text = console.export_text()
    assert "best (epoch 2) IoU %" in text and "final (epoch 3) IoU %" in text
    assert "50.00" in text and "—" in text  # road's IoU, and a class absent from both
