"""Thin-road and wide-road IoU: the zones, the counts, the width maps the generator writes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lovaszseg.callbacks.width_iou import zone_counts, zone_iou
from lovaszseg.data.synthetic.roads import nearest_road_width, render_road_scene, road_settings

# A 1 px road in column 1 and a 5 px-wide one (drawn width) in columns 4-5; every pixel belongs to
# the road nearest to it: columns 0-2 to the thin one, 3-5 to the wide one.
WIDTH = torch.tensor([[1, 1, 1, 5, 5, 5]] * 3, dtype=torch.uint8)
TARGET = torch.tensor(
    [
        [0, 1, 0, 0, 1, 1],
        [0, 1, 0, 255, 1, 1],
        [0, 1, 0, 0, 1, 1],
    ]
)
PREDS = torch.tensor(
    [
        [0, 1, 0, 0, 1, 1],  # perfect
        [1, 1, 0, 1, 1, 0],  # a false positive beside the thin road; one on an ignored pixel
        [0, 0, 0, 0, 1, 1],  # the thin road missed
    ]
)


def test_zone_counts_by_hand():
    counts = zone_counts(PREDS, TARGET, WIDTH, thin_max=3)
    # thin zone: truth (0,1) (1,1) (2,1); predicted (0,1) (1,0) (1,1): I = 2, U = 4
    # wide zone: truth 6 pixels, predicted 5 of them, (1,3) is ignored: I = 5, U = 6
    assert counts.tolist() == [[2.0, 4.0], [5.0, 6.0]]
    assert zone_iou(counts) == {"thin": 0.5, "wide": 5 / 6}


def test_the_threshold_is_inclusive_and_roadless_pixels_count_nowhere():
    width = torch.tensor([[3, 3, 4, 4, 0, 0]])
    target = torch.tensor([[1, 0, 1, 0, 0, 0]])
    preds = torch.tensor([[1, 1, 1, 1, 1, 1]])
    counts = zone_counts(preds, target, width, thin_max=3)
    assert counts.tolist() == [[1.0, 2.0], [1.0, 2.0]]
    empty = zone_counts(preds, target, torch.zeros_like(width), thin_max=3)
    assert math.isnan(zone_iou(empty)["thin"]) and math.isnan(zone_iou(empty)["wide"])


def test_zone_counts_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        zone_counts(PREDS, TARGET, WIDTH[:, :5])


def test_nearest_road_width_takes_the_width_of_the_closest_drawn_road():
    drawn = np.zeros((1, 7), np.uint8)
    drawn[0, 0], drawn[0, 5] = 2, 6
    assert nearest_road_width(drawn).tolist() == [[2, 2, 2, 6, 6, 6, 6]]
    assert not nearest_road_width(np.zeros((3, 3), np.uint8)).any()


def test_generated_width_maps_hold_the_drawn_widths():
    knobs = road_settings({"difficulty": "medium", "thin_fraction": 0.5, "label_noise": 0.0})
    _image, label, width = render_road_scene(np.random.default_rng(3), 128, knobs)
    assert width.shape == label.shape and width.dtype == np.uint8
    low, high = knobs["road_width"]
    on_road = set(np.unique(width[label == 1]).tolist())
    assert on_road <= {1, 2, *range(low, high + 1)}
    assert width.min() > 0  # every pixel has a nearest road
