"""The metric-per-epoch figure: each seed thin, each group's mean and min–max band.

The single seeds beside the mean show at once whether two losses are apart or inside each other's
seed noise; the y axis spans at least MIN_SPAN_POINTS so that noise of a few tenths does not look
like a cliff. A bare ``Figure`` renders without pyplot's global state or a display.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from lovaszseg.reporting.aggregate import Report, last_third_start
from lovaszseg.runs.atomic import atomic_path

PANEL_SIZE = (7.0, 4.8)
LEGEND_WIDTH = 3.0
MAX_COLUMNS = 3
DPI = 120
MIN_SPAN_POINTS = 2.0
PLATEAU_WINDOW_COLOUR = "#ececec"
"""The last third of the epochs, where the plateau rule reads the gain."""
LEGEND_TITLE = "loss: mean, min–max band\nthin: single seeds\ndashed: not counted"


def group_colours(report: Report) -> dict[str, tuple]:
    """One colour per group label, the same in every panel."""
    labels = list(dict.fromkeys(g["label"] for p in report.panels for g in p["groups"]))
    cmap = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def plot_curves(report: Report, title: str, path: Path) -> None:
    colours, n = group_colours(report), len(report.panels)
    cols, rows = min(n, MAX_COLUMNS), math.ceil(n / MAX_COLUMNS)
    size = (PANEL_SIZE[0] * cols + LEGEND_WIDTH, PANEL_SIZE[1] * rows)
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(rows, cols, sharey=True, squeeze=False).ravel()
    for ax, panel, heading in zip(axes, report.panels, report.headings, strict=False):
        curves = {
            g["label"]: [
                (report.runs[r["path"]].curves.get(report.metric, {}), r["counted"])
                for r in g["runs"]
            ]
            for g in panel["groups"]
        }
        _draw_panel(ax, curves, heading, colours)
    low, high = axes[0].get_ylim()  # the shared y axis spans at least MIN_SPAN_POINTS
    if high - low < MIN_SPAN_POINTS:
        middle = (low + high) / 2
        axes[0].set_ylim(middle - MIN_SPAN_POINTS / 2, middle + MIN_SPAN_POINTS / 2)
    for ax in axes[n:]:
        ax.set_visible(False)
    for ax in axes[::cols]:
        ax.set_ylabel(f"{report.metric} (%)")
    counts: dict[str, list[str]] = {label: [] for label in colours}  # bce (n=3, 2): per panel
    for group in (g for p in report.panels for g in p["groups"]):
        counts[group["label"]].append(str(group["n"]))
    fig.legend(
        [Line2D([], [], color=colour, linewidth=2.2) for colour in colours.values()],
        [f"{label} (n={', '.join(counts[label])})" for label in colours],
        loc="outside right upper",
        fontsize="small",
        title=LEGEND_TITLE,
        title_fontsize="small",
        alignment="left",
    )
    fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


def _draw_panel(ax, curves: dict[str, list[tuple[dict[int, float], bool]]], heading, colours):
    """Runs (counted solid, others dashed), then the mean and band at the epochs all reached."""
    _shade_last_third(ax, [curve for runs in curves.values() for curve, counted in runs if counted])
    for label, runs in curves.items():
        for counted in (True, False):
            for curve in (curve for curve, is_counted in runs if is_counted == counted):
                line = 100.0 * pd.Series(curve).sort_index()
                marker = "o" if len(line) == 1 else None  # a run killed after one epoch
                style = "-" if counted else "--"
                ax.plot(line, style, marker=marker, color=colours[label], lw=0.8, alpha=0.45)
        counted = [curve for curve, is_counted in runs if is_counted and curve]
        table = 100.0 * pd.DataFrame(counted).T.sort_index().dropna()
        if not table.empty:
            ax.plot(table.index, table.mean(axis=1), color=colours[label], linewidth=2.2)
        if not table.empty and table.shape[1] > 1:
            band = (table.min(axis=1), table.max(axis=1))
            ax.fill_between(table.index, *band, color=colours[label], alpha=0.18)
    if heading is not None:
        ax.set_title(heading)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)


def _shade_last_third(ax, curves: list[dict[int, float]]) -> None:
    """The longest run's last ⌈E/3⌉ validations as ``last_third_gain`` reads them, each over its
    interval (a run validated every k epochs shades k per validation)."""
    epochs = sorted(max(curves, key=len, default={}))
    if (first := last_third_start(epochs)) is None:
        return
    start, last = epochs[first], epochs[-1]
    step = start - epochs[first - 1]  # 1 when every epoch is validated
    ax.axvspan(start - step / 2, last + step / 2, color=PLATEAU_WINDOW_COLOUR, lw=0, zorder=0)
    where = ax.get_xaxis_transform()
    ax.text(start - step / 2 + 0.2, 0.02, "last ⅓", transform=where, fontsize="small", color="0.45")
