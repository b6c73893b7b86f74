"""The evaluation panel: image | truth | prediction, each titled above its own column."""

from __future__ import annotations

import numpy as np

from lovaszseg.inference.overlay import PANEL_GAP, TITLE_BAND, draw_labels, panel

HEIGHT, WIDTH = 40, 72


def ink_columns(band: np.ndarray) -> np.ndarray:
    """Indices of the band's columns holding any dark (title) pixel."""
    return np.flatnonzero((band.min(axis=2) < 128).any(axis=0))


def test_the_panels_sit_under_a_band_with_one_title_centred_over_each():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    truth = rng.integers(0, 3, (HEIGHT, WIDTH))
    prediction = np.zeros((HEIGHT, WIDTH), dtype=np.int64)
    drawn = panel(image, truth, prediction)
    assert drawn.shape == (TITLE_BAND + HEIGHT, 3 * WIDTH + 2 * PANEL_GAP, 3)

    below = drawn[TITLE_BAND:]
    step = WIDTH + PANEL_GAP
    assert np.array_equal(below[:, :WIDTH], image)
    assert np.array_equal(below[:, step : step + WIDTH], draw_labels(image, truth))
    assert np.array_equal(below[:, 2 * step :], image)  # all background: nothing drawn

    ink = ink_columns(drawn[:TITLE_BAND])
    spans = []
    for column in range(3):
        left = column * step
        mine = ink[(ink >= left) & (ink < left + WIDTH)]
        assert mine.size, f"no title over column {column}"
        assert abs((mine.min() + mine.max()) / 2 - (left + WIDTH / 2)) <= 2  # centred
        spans.append(mine.max() - mine.min())
    assert set(ink) <= {i for c in range(3) for i in range(c * step, c * step + WIDTH)}
    # "image" and "truth" are five letters, "prediction" ten
    assert spans[2] > 1.5 * max(spans[0], spans[1])
