"""Per-epoch curves from a Lightning CSVLogger ``metrics.csv``.

Rows are sparse and a resumed run re-logs the epoch it was killed in, so the last value logged in
an epoch wins (``groupby("epoch").last()`` also skips NaN and the cells of a row cut short).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

Curves = dict[str, dict[int, float]]


def read_curves(path: Path) -> Curves:
    """Every logged metric as {epoch: value}; ValueError names a file that is not CSVLogger's."""
    try:  # round_trip parses each cell as Python's float() does, to the last bit
        table = pd.read_csv(path, encoding="utf-8", float_precision="round_trip")
    except pd.errors.EmptyDataError:
        return {}
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise ValueError(f"{path}: cannot read metrics.csv ({err})") from err
    if "epoch" not in table and "step" in table:
        return {}  # CSVLogger adds the epoch column with the first epoch's row
    if "epoch" not in table:
        raise ValueError(
            f"{path}: not a Lightning CSVLogger file: expected an 'epoch' column, "
            f"found {list(table.columns[:8])}"
        )
    numbers = table.apply(pd.to_numeric, errors="coerce")
    bad = (table.notna() & numbers.isna()).stack()
    if bad.any():
        row, column = bad[bad].index[0]
        raise ValueError(
            f"{path}, line {row + 2}, column {column!r}: expected a number, "
            f"got {table.at[row, column]!r}"
        )
    per_epoch = numbers.drop(columns="step", errors="ignore").groupby("epoch").last()
    return {
        str(name): {int(epoch): float(value) for epoch, value in column.dropna().items()}
        for name, column in per_epoch.items()
        if column.notna().any()
    }
