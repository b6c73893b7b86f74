"""The mIoU-per-epoch figure: every seed as a thin line, each group's mean and min–max band.

Showing the single seeds beside the mean is the point: a reader sees at once whether two loss
configurations are apart or inside each other's seed spread — the curves PaddleSeg shows, made
honest about noise. One panel per ``--by`` value, sharing the y axis and the colours. The y axis
spans at least MIN_SPAN_POINTS, so that seed noise of a few tenths looks like noise, not like a
cliff. The last third of the epochs, where the report's plateau rule reads the gain, is shaded.
A bare ``Figure`` renders with the Agg canvas, without pyplot's global state or a display.
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
"""The least span of the y axis, in points of the metric (%)."""
PLATEAU_WINDOW_COLOUR = "#ececec"
"""The shading of the last third of the epochs (opaque, behind the curves)."""


def group_colours(report: Report) -> dict[str, tuple]:
    """One colour per group label, the same in every panel, in ranking order."""
    labels = list(dict.fromkeys(g["label"] for p in report.panels for g in p["groups"]))
    cmap = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def plot_curves(report: Report, title: str, path: Path) -> None:
    """Write the figure as a PNG to ``path`` (atomically)."""
    colours = group_colours(report)
    n = len(report.panels)
    cols, rows = min(n, MAX_COLUMNS), math.ceil(n / MAX_COLUMNS)
    fig = Figure(
        figsize=(PANEL_SIZE[0] * cols + LEGEND_WIDTH, PANEL_SIZE[1] * rows), layout="constrained"
    )
    axes = fig.subplots(rows, cols, sharey=True, squeeze=False).ravel()
    for ax, panel, heading in zip(axes, report.panels, report.headings, strict=False):
        _draw_panel(ax, _curves(report, panel), heading, colours)
    _widen_to_min_span(axes[0])
    for ax in axes[n:]:
        ax.set_visible(False)
    for ax in axes[::cols]:
        ax.set_ylabel(f"{report.metric} (%)")
    handles, labels = _legend_entries(report, colours)
    fig.legend(
        handles,
        labels,
        loc="outside right upper",
        fontsize="small",
        title="loss: mean, min–max band\nthin: single seeds\ndashed: not counted",
        title_fontsize="small",
        alignment="left",
    )
    fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


Curves = dict[str, dict[bool, list[dict[int, float]]]]
"""group label -> {counted: the curves of its runs}"""


def _curves(report: Report, panel: dict) -> Curves:
    curves: Curves = {}
    for group in panel["groups"]:
        curves[group["label"]] = {True: [], False: []}
        for run in group["runs"]:
            curve = report.runs[run["path"]].curves.get(report.metric, {})
            curves[group["label"]][run["counted"]].append(curve)
    return curves


def _draw_panel(ax, curves: Curves, heading: str | None, colours: dict[str, tuple]) -> None:
    _shade_last_third(ax, [c for group in curves.values() for c in group[True]])
    for label, group in curves.items():
        for style, counted in (("-", True), ("--", False)):
            for curve in group[counted]:
                line = 100.0 * pd.Series(curve).sort_index()
                marker = "o" if len(line) == 1 else None  # a run killed after one epoch
                ax.plot(line, style, marker=marker, color=colours[label], lw=0.8, alpha=0.45)
        _draw_mean_and_band(ax, group[True], colours[label])
    if heading is not None:
        ax.set_title(heading)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)


def _widen_to_min_span(ax) -> None:
    """At least MIN_SPAN_POINTS on the (shared) y axis, centred on the data."""
    low, high = ax.get_ylim()
    if high - low < MIN_SPAN_POINTS:
        middle = (low + high) / 2
        ax.set_ylim(middle - MIN_SPAN_POINTS / 2, middle + MIN_SPAN_POINTS / 2)


def _shade_last_third(ax, curves: list[dict[int, float]]) -> None:
    """The last ⌈E/3⌉ of the E validated epochs of the panel's longest run, as
    ``last_third_gain`` reads them, each validation's interval shaded (a run validated every
    k epochs shades the last third of its epochs); nothing below 3 validations."""
    epochs = sorted(max(curves, key=len, default={}))
    first = last_third_start(epochs)
    if first is None:
        return
    start, last = epochs[first], epochs[-1]
    step = start - epochs[first - 1]  # 1 when every epoch is validated
    ax.axvspan(start - step / 2, last + step / 2, color=PLATEAU_WINDOW_COLOUR, lw=0, zorder=0)
    ax.text(
        start - step / 2 + 0.2,
        0.02,
        "last ⅓",
        transform=ax.get_xaxis_transform(),
        fontsize="small",
        color="0.45",
    )


def _draw_mean_and_band(ax, curves: list[dict[int, float]], colour: tuple) -> None:
    """Mean and min–max over the counted runs, at the epochs all of them reached."""
    table = 100.0 * pd.DataFrame([c for c in curves if c]).T.sort_index().dropna()
    if table.empty:
        return
    ax.plot(table.index, table.mean(axis=1), color=colour, linewidth=2.2)
    if table.shape[1] > 1:
        ax.fill_between(table.index, table.min(axis=1), table.max(axis=1), color=colour, alpha=0.18)


def _legend_entries(report: Report, colours: dict[str, tuple]) -> tuple[list, list[str]]:
    """One entry per group, with its seed count in each panel: ``bce (n=3)``, ``bce (n=3, 2)``."""
    counts: dict[str, list[str]] = {label: [] for label in colours}
    for panel in report.panels:
        for group in panel["groups"]:
            counts[group["label"]].append(str(group["n"]))
    handles = [Line2D([], [], color=colours[label], linewidth=2.2) for label in colours]
    return handles, [f"{label} (n={', '.join(counts[label])})" for label in colours]
