"""Read the per-epoch curves out of a Lightning CSVLogger ``metrics.csv``.

CSVLogger writes one sparse row per ``log_metrics`` call: validation rows carry ``val/*``
columns and leave the training columns empty, and vice versa. Resuming a run re-logs the epoch
it was killed in, so for each metric the last value logged in an epoch wins.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

Curves = dict[str, dict[int, float]]
"""metric name -> {epoch: value}"""


def read_curves(path: Path) -> Curves:
    """Return every logged metric as an epoch -> value map (empty for an empty file, and for
    a file without epoch rows yet: CSVLogger adds the ``epoch`` column with the first of them).

    Raises ValueError naming the file when it cannot be read or is not CSVLogger output.
    """
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path}: cannot read metrics.csv ({err})") from err
    if not header:
        return {}
    if "epoch" not in header and "step" in header:
        return {}  # a run that died in its first epoch logged only step-level values
    if "epoch" not in header:
        raise ValueError(
            f"{path}: not a Lightning CSVLogger file: expected an 'epoch' column, "
            f"found {header[:8]}"
        )
    curves: Curves = {name: {} for name in header if name not in ("epoch", "step")}
    for line_no, row in enumerate(rows, start=2):
        epoch = _number(row.get("epoch"), path, line_no, "epoch")
        if epoch is None:
            continue
        for name, curve in curves.items():
            value = _number(row.get(name), path, line_no, name)
            if value is not None:
                curve[int(epoch)] = value
    return {name: curve for name, curve in curves.items() if curve}


def _number(text: str | None, path: Path, line_no: int, column: str) -> float | None:
    """Parse one cell; empty cells (and the NaNs of a diverged metric) are missing values.

    A short last row (a run killed while writing) yields None cells, also treated as missing.
    """
    if text is None or text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError as err:
        raise ValueError(
            f"{path}, line {line_no}, column {column!r}: expected a number, got {text!r}"
        ) from err
    return None if math.isnan(value) else value
