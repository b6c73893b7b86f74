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
    PLATEAU_WINDOW_COLOUR,
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


def shaded_mask(tmp_path, epochs: int, every: int = 1) -> np.ndarray:
    """Where the figure of two runs of ``epochs`` validations, one every ``every`` epochs, is
    shaded."""
    specs = [{"loss": "bce", "seed": s, "miou": road_curve(0.7, epochs)} for s in (1, 2)]
    runs = load_runs([write_sweep(tmp_path / f"e{epochs}x{every}", specs)])
    for run in runs:  # validated at the end of every `every`-th epoch, as Lightning does
        for name, curve in run.curves.items():
            run.curves[name] = {every * e + every - 1: v for e, v in curve.items()}
    path = tmp_path / f"e{epochs}x{every}.png"
    plot_curves(summarise(runs), "title", path)
    with Image.open(path) as png:
        pixels = np.asarray(png.convert("RGB")).astype(int)
    shade = np.array([int(PLATEAU_WINDOW_COLOUR[i : i + 2], 16) for i in (1, 3, 5)])
    return np.abs(pixels - shade).max(axis=-1) == 0


def test_the_last_third_of_the_epochs_is_shaded(tmp_path):
    # 5 epochs: the window is epochs 3-4, two of the x axis' 4 units (0..4 plus margins)
    five = shaded_mask(tmp_path, 5).sum()
    panel_pixels = PANEL_SIZE[0] * PANEL_SIZE[1] * DPI * DPI
    assert 0.2 * panel_pixels < five < 0.5 * panel_pixels
    # below 3 epochs there is no last third (a few anti-aliased edge pixels share the grey)
    assert shaded_mask(tmp_path, 2).sum() < 0.001 * panel_pixels


def test_runs_validated_every_third_epoch_shade_the_last_third_of_their_epochs(tmp_path):
    # validations at epochs 2, 5, 8, 11, 14: the last two cover epochs 9.5-15.5 of the axis'
    # 2-15.5, about 45 % of the panel's width, on its right; not the first 2 units of 15
    shaded = shaded_mask(tmp_path, 5, every=3)
    columns = np.flatnonzero(shaded.sum(axis=0) > 0.5 * shaded.sum(axis=0).max())
    panel_width = PANEL_SIZE[0] * DPI
    assert 0.35 * panel_width < len(columns) < 0.5 * panel_width
    assert columns.min() > 0.45 * panel_width  # it starts past the middle of the panel
