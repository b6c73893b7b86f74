"""The ranked tables of a report, built once and rendered as Markdown or on the terminal.

Scores are shown in percent (as PaddleSeg reports mIoU), differences in percentage points, and
a missing spread as "n/a" — a single seed has no standard deviation, not a zero one.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich import box
from rich.table import Table as RichTable

from lovaszseg.reporting.aggregate import GroupSummary, Paired, Panel, Report, Spread

MAX_CLASS_COLUMNS = 5
"""Up to this many classes, per-class IoU sits in the ranking; beyond, in its own table."""

NA = "n/a"


@dataclass(frozen=True)
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    label_column: int = 1
    """The column of names (left-aligned, may wrap); the others hold numbers."""


def ranking_table(panel: Panel, metric: str) -> Table:
    """One row per loss group, best mean first, with Δ to the panel's baseline."""
    classes = panel.class_names if len(panel.class_names) <= MAX_CLASS_COLUMNS else ()
    baseline = panel.baseline or "baseline"
    header = [
        "#",
        "loss",
        "n",
        f"best {metric} (%)",
        f"Δ vs {baseline} (pp)",
        "Δ/σ",
        *(f"IoU {name} (%)" for name in classes),
        "best epoch",
        "epochs",
        "gain over last ⅓ (pp)",
        "time / run",
    ]
    rows = []
    for rank, group in enumerate(panel.groups, start=1):
        rows.append(
            [
                str(rank) if group.best else "–",
                group.label,
                _count(group),
                mean_std(group.best),
                "baseline" if group.is_baseline else signed(group.delta, 100.0, 2),
                "–" if group.is_baseline else signed(group.delta_in_std, 1.0, 1),
                *(mean_std(group.per_class.get(name)) for name in classes),
                value_range(group.best_epoch),
                value_range(group.epochs),
                mean_std(group.last_third_gain),
                duration(group.wall_time_s.mean if group.wall_time_s else None),
            ]
        )
    title = f"Best {metric}" + (f" — {panel.heading}" if panel.heading else "")
    return Table(title, header, rows)


def per_class_table(panel: Panel) -> Table | None:
    """Per-class IoU (mean ± std at each run's best epoch), classes down, groups across."""
    if len(panel.class_names) <= MAX_CLASS_COLUMNS:
        return None
    groups = [g for g in panel.groups if g.best]
    header = ["class", *(g.label for g in groups)]
    rows = [
        [name, *(mean_std(g.per_class.get(name)) for g in groups)] for name in panel.class_names
    ]
    title = "Per-class IoU (%)" + (f" — {panel.heading}" if panel.heading else "")
    return Table(title, header, rows, label_column=0)


def per_class_delta_table(panel: Panel) -> Table | None:
    """Δ of each group's per-class IoU to the baseline's, in pp and in pooled seed std."""
    groups = [g for g in panel.groups if g.best and not g.is_baseline and g.per_class_delta]
    return _classes_by_group(
        panel,
        groups,
        lambda g, name: _delta_cell(g.per_class_delta.get(name)),
        f"Per-class IoU Δ vs {panel.baseline} (pp, Δ/σ)",
    )


def _classes_by_group(panel: Panel, groups: list[GroupSummary], cell, title: str) -> Table | None:
    """Classes down, ``groups`` across, ``cell(group, class)`` in each; None without groups."""
    if not groups:
        return None
    header = ["class", *(g.label for g in groups)]
    rows = [[name, *(cell(g, name) for g in groups)] for name in panel.class_names]
    heading = f" — {panel.heading}" if panel.heading else ""
    return Table(title + heading, header, rows, label_column=0)


def paired_table(panel: Panel, metric: str) -> Table | None:
    """Each group against the baseline's run of the same seed: the differences, seed by seed,
    their mean, and the paired t-test (two-sided p); None when no group pairs up."""
    groups = [g for g in panel.groups if g.paired is not None]
    if not groups:
        return None
    header = [
        "loss",
        "seeds",
        f"Δ {metric} per seed (pp)",
        "mean Δ (pp)",
        "paired t",
        "p",
    ]
    rows = [
        [
            g.label,
            " / ".join(str(seed) for seed in g.paired.seeds),
            " / ".join(signed(d, 100.0, 2) for d in g.paired.deltas),
            signed(g.paired.mean, 100.0, 2),
            signed(g.paired.t, 1.0, 2),
            _p_value(g.paired.p),
        ]
        for g in groups
    ]
    title = f"Paired by seed: Δ {metric} vs {panel.baseline}" + (
        f" — {panel.heading}" if panel.heading else ""
    )
    return Table(title, header, rows, label_column=0)


def per_class_paired_table(panel: Panel) -> Table | None:
    """Per class, each group's mean per-seed Δ IoU to the baseline with its paired t and p."""
    return _classes_by_group(
        panel,
        [g for g in panel.groups if g.paired_per_class],
        lambda g, name: _paired_cell(g.paired_per_class.get(name)),
        f"Paired by seed: per-class IoU Δ vs {panel.baseline} (pp; paired t, p)",
    )


def _paired_cell(paired: Paired | None) -> str:
    if paired is None:
        return NA
    return f"{signed(paired.mean, 100.0, 2)} ({signed(paired.t, 1.0, 1)}, {_p_value(paired.p)})"


def _p_value(p: float | None) -> str:
    if p is None:
        return NA
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _delta_cell(delta: tuple[float, float | None] | None) -> str:
    if delta is None:
        return NA
    points, in_std = delta
    std = NA if in_std is None else f"{in_std:+.1f}σ"
    return f"{signed(points, 100.0, 2)} ({std})"


def incomplete_table(report: Report) -> Table:
    """The runs without a finished results.json: how far they got, and whether they count."""
    header = ["run", "loss", "seed", "status", "epochs logged", "best so far (%)", "counted"]
    rows = []
    for panel in report.panels:
        for group in panel.groups:
            for scores, counted in ((group.scores, "yes"), (group.left_out, "no")):
                rows += [
                    [
                        str(s.run.path),
                        group.label,
                        str(s.run.seed),
                        s.run.status,
                        str(len(s.run.curves.get(report.metric, {}))),
                        NA if s.best is None else f"{100.0 * s.best:.2f}",
                        counted,
                    ]
                    for s in scores
                    if not s.run.complete
                ]
    return Table("Incomplete runs", header, rows, label_column=0)


def to_markdown(table: Table) -> str:
    lines = [_md_row(table.header), _md_row(["---"] * len(table.header))]
    lines += [_md_row(row) for row in table.rows]
    return "\n".join(lines)


def to_rich(table: Table, width: int) -> list[RichTable]:
    """Terminal tables no wider than ``width``: number columns exactly as wide as their cells
    (headers wrap at spaces), names folded when long, and where the columns do not fit side by
    side the table is split into parts that each repeat the leading columns (rank, name), so
    that no column is dropped or cut short — a SLURM log or a pipe is 80 columns wide."""
    return [_rich_table(part) for part in split_to_width(table, width)]


def split_to_width(table: Table, width: int) -> list[Table]:
    """``table`` as column groups that each fit ``width``, the leading columns in every one."""
    keys = list(range(table.label_column + 1))
    rest = [i for i in range(len(table.header)) if i not in keys]
    budget = width - sum(_column_width(table, i, width) for i in keys)
    groups: list[list[int]] = [[]]
    used = 0
    for i in rest:
        needed = _column_width(table, i, width)
        if groups[-1] and used + needed > budget:
            groups.append([])
            used = 0
        groups[-1].append(i)
        used += needed
    if len(groups) == 1:
        return [table]
    return [
        Table(
            f"{table.title} ({part}/{len(groups)})",
            [table.header[i] for i in keys + group],
            [[row[i] for i in keys + group] for row in table.rows],
            table.label_column,
        )
        for part, group in enumerate(groups, start=1)
    ]


COLUMN_GAP = 2
"""Characters between two columns of a rendered table."""


def _column_width(table: Table, i: int, width: int) -> int:
    """Room a column takes: its widest cell or header word; a names column folds at a third
    of the width."""
    cells = max((len(row[i]) for row in table.rows), default=0)
    word = max(len(w) for w in table.header[i].split())
    if i == table.label_column:
        return min(max(cells, word), max(20, width // 3)) + COLUMN_GAP
    return max(cells, word) + COLUMN_GAP


def _rich_table(table: Table) -> RichTable:
    rich_table = RichTable(
        title=table.title, box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False
    )
    for i, name in enumerate(table.header):
        cells = max((len(row[i]) for row in table.rows), default=0)
        if i == table.label_column:
            rich_table.add_column(name, justify="left", min_width=min(cells, 20), overflow="fold")
        else:
            word = max(len(w) for w in name.split())
            rich_table.add_column(name, justify="right", width=max(cells, word))
    for row in table.rows:
        rich_table.add_row(*row)
    return rich_table


def mean_std(spread: Spread | None) -> str:
    if spread is None:
        return NA
    std = NA if spread.std is None else f"{100.0 * spread.std:.2f}"
    return f"{100.0 * spread.mean:.2f} ± {std}"


def signed(value: float | None, scale: float, digits: int) -> str:
    return NA if value is None else f"{scale * value:+.{digits}f}"


def value_range(spread: Spread | None) -> str:
    if spread is None:
        return NA
    low, high = round(spread.min), round(spread.max)
    return str(low) if low == high else f"{low}–{high}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return NA
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{seconds:.1f}s"


def _count(group: GroupSummary) -> str:
    extra = len(group.left_out)
    return f"{len(group.scores)} (+{extra})" if extra else str(len(group.scores))


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", r"\|") for cell in cells) + " |"
