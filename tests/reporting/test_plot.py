"""The figure: one panel per --by value, wrapped into rows, every group drawn in its colour."""

from __future__ import annotations

import numpy as np
from PIL import Image

from lovaszseg.reporting.aggregate import summarise
from lovaszseg.reporting.plot import (
    DPI,
    LEGEND_WIDTH,
    MAX_COLUMNS,
    PANEL_SIZE,
    group_colours,
    plot_curves,
)
from lovaszseg.reporting.runs import load_runs
from tests.reporting.fakes import road_curve, write_sweep


def test_four_panels_wrap_into_two_rows_with_each_group_coloured(tmp_path):
    specs = [
        {"loss": loss, "seed": seed, "miou": road_curve(m + 0.01 * seed), "difficulty": level}
        for level in ("a", "b", "c", "d")
        for loss, m in (("bce", 0.6), ("lovasz_hinge_bce", 0.65))
        for seed in (1, 2)
    ]
    report = summarise(load_runs([write_sweep(tmp_path / "s", specs)]), by="data.difficulty")
    path = tmp_path / "out" / "figure.png"
    plot_curves(report, "title", path)

    with Image.open(path) as png:
        pixels = np.asarray(png.convert("RGB"))
    width = (PANEL_SIZE[0] * MAX_COLUMNS + LEGEND_WIDTH) * DPI
    assert pixels.shape == (round(2 * PANEL_SIZE[1] * DPI), round(width), 3)
    for colour in group_colours(report).values():
        rgb = np.round(np.array(colour[:3]) * 255)
        assert (np.abs(pixels - rgb).max(axis=-1) <= 2).sum() > 200  # mean lines are drawn
    assert [p.name for p in path.parent.iterdir()] == ["figure.png"]  # no temp file left
