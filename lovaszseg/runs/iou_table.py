"""The per-class IoU table printed at the end of training and evaluation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

from lovaszseg.runs import contract


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def iou_table(title: str, columns: Mapping[str, Mapping[str, Any]]) -> Table:
    """One row per class plus mIoU; one column per entry (e.g. best and final epoch).

    Each entry is a results.json record: ``{"epoch", "val/mIoU", "per_class_iou"}``. Classes
    absent from both prediction and ground truth show as a dash.
    """
    table = Table(title=title, title_justify="left")
    table.add_column("class")
    for label, entry in columns.items():
        # results.json keeps Lightning's 0-based epoch; people (and the epoch log) count from 1
        table.add_column(f"{label} (epoch {entry[contract.EPOCH] + 1}) IoU %", justify="right")
    per_class = contract.PER_CLASS_IOU
    class_names = next(iter(columns.values()))[per_class] if columns else {}
    for name in class_names:
        table.add_row(name, *(_percent(e[per_class].get(name)) for e in columns.values()))
    table.add_section()
    miou = (_percent(e[contract.VAL_MIOU]) for e in columns.values())
    table.add_row("mIoU", *miou, style="bold")
    return table


def print_iou_table(title: str, columns: Mapping[str, Mapping[str, Any]]) -> None:
    Console(width=max(100, Console().width)).print(iou_table(title, columns))
