"""A run's logged values as a table a person reads: one row per epoch, one column per metric.

Lightning logs an epoch in several calls (the learning rate when it starts, the validation
metrics, then the training losses), and a resumed run logs the epoch it was stopped in again.
Merging every call into its epoch's row gives one line per epoch whatever the order, and a
re-run epoch replaces its own cells instead of adding a second line. Values logged without an
epoch (``LearningRateMonitor`` passes only the step) belong to the epoch that is starting: they
wait for that epoch's first value. A value logged several times in one epoch keeps the last.

Reading a file back replays its rows through the same merge, so the older sparse layout
(Lightning's CSVLogger: a row per call) is read into the same table and rewritten per epoch.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

EPOCH = "epoch"
STEP = "step"
LEADING = (EPOCH, STEP)
"""Columns first in every file; the metrics follow sorted, so ``train/*`` and ``val/*`` sit
together."""


def cell(value: Any) -> str:
    """A value as the file holds it: Python's shortest round-tripping text (as Lightning's
    CSVLogger writes it), so a value read back and rewritten keeps every digit."""
    if hasattr(value, "item"):  # a tensor or numpy scalar
        value = value.item()
    return str(value)


class EpochRows:
    """The per-epoch table: ``add`` each logged dict, ``to_csv`` for the file's text."""

    def __init__(self) -> None:
        self._rows: dict[int, dict[str, str]] = {}
        self._pending: dict[str, str] = {}

    def add(self, metrics: Mapping[str, Any], step: int | None = None) -> bool:
        """Merge one logged dict; True when a row changed (the file is worth rewriting)."""
        values = {name: cell(value) for name, value in metrics.items() if name != EPOCH}
        if step is not None:
            values[STEP] = cell(step)
        epoch = metrics.get(EPOCH)
        if epoch is None or cell(epoch) == "":
            self._pending.update(values)
            return False
        row = self._rows.setdefault(whole_epoch(epoch), {})
        row.update(self._pending)
        row.update(values)
        self._pending.clear()
        return True

    @property
    def epochs(self) -> list[int]:
        return sorted(self._rows)

    def columns(self) -> list[str]:
        names = set().union(*self._rows.values()) - set(LEADING)
        return [*LEADING, *sorted(names)]

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns(), lineterminator="\n")
        writer.writeheader()
        for epoch in self.epochs:
            writer.writerow({EPOCH: str(epoch), **self._rows[epoch]})
        return buffer.getvalue()


def whole_epoch(value: Any) -> int:
    """The epoch number of a logged or read value (``3``, ``3.0``, ``"3"``)."""
    try:
        number = float(cell(value))
    except ValueError:
        number = math.nan
    if not number.is_integer() or number < 0:
        raise ValueError(f"epoch {value!r}: expected a whole number >= 0")
    return int(number)


def read_epoch_rows(path: Path) -> EpochRows:
    """The table in ``path`` (per-epoch, or Lightning's sparse rows); empty when it does not exist.

    Raises ValueError naming the file and line when the file is not CSV with an ``epoch`` column.
    """
    table = EpochRows()
    if not path.is_file():
        return table
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows: Iterable[dict[str, str | None]] = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path}: cannot read it as CSV ({err})") from err
    for line_no, row in enumerate(rows, start=2):
        # a short row (a file torn by a killed write) reads as None cells: missing values
        present = {name: text for name, text in row.items() if name and text}
        try:
            table.add(present)
        except ValueError as err:
            raise ValueError(f"{path}, line {line_no}: {err}") from err
    return table
