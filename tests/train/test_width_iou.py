"""Thin-road and wide-road IoU: the zones, the counts, the width maps the generator writes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lovaszseg.callbacks.width_iou import zone_counts, zone_iou
from lovaszseg.data import DeepGlobeRoadDataModule
from lovaszseg.data.files import read_width_map, width_map_path
from lovaszseg.data.synthetic import SyntheticRoads
from lovaszseg.data.synthetic.drawing import sample_rng
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


def test_a_width_map_is_named_after_its_road_label():
    assert width_map_path(Path("val/0007_mask.png")) == Path("val/0007_width.png")
    with pytest.raises(ValueError, match=r"2012_000001\.png is not named <stem>_mask\.png"):
        width_map_path(Path("SegmentationClass/2012_000001.png"))


@pytest.mark.parametrize("layout", ["list", "original"])
def test_the_width_maps_written_are_the_ones_drawn_and_read_back(tmp_path, layout):
    generator = SyntheticRoads(num_train=2, num_val=2, image_size=96, layout=layout, seed=4)
    dm = DeepGlobeRoadDataModule(tmp_path / "r", synthetic=generator)
    dm.setup()
    assert all(width_map_path(s.label).is_file() for s in dm.val_dataset.samples)
    for split, index in (("train", 1), ("val", 0)):
        stem = {  # where each layout stores a generated sample's label
            "list": f"{split}/{index:04d}",
            "original": f"train/{100000 + (500000 if split == 'val' else 0) + index}",
        }[layout]
        drawn = render_road_scene(sample_rng(4, split, index), 96, generator.settings)[2]
        stored = read_width_map(width_map_path(tmp_path / "r" / f"{stem}_mask.png"))
        assert stored.dtype == np.uint8 and np.array_equal(stored, drawn)


def test_a_width_map_that_is_not_8_bit_grey_is_refused(tmp_path):
    path = tmp_path / "0000_width.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    with pytest.raises(ValueError, match=r"0000_width\.png has mode RGB; expected an 8-bit grey"):
        read_width_map(path)
