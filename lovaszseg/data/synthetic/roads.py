"""Synthetic aerial road scenes written in the DeepGlobe layouts.

Textured land cover, buildings and a thin road network covering about 4-5% of the pixels (as in
DeepGlobe), so the DeepGlobe loading code runs unchanged on data that is made in seconds. The
difficulty knobs carry what makes real road extraction hard: roads under trees and shadows, faint
and one-pixel-thin segments, low contrast, roofs coloured like asphalt and noisy label edges.

Beside each label the generator writes its width map (:func:`lovaszseg.data.files.width_map_path`):
for every pixel, the pen width in px of the road drawn nearest to it. That is exact (it is how the
road was drawn) and splits the image into thin-road and wide-road zones, so that a metric can score
thin roads apart from wide ones (:mod:`lovaszseg.callbacks.width_iou`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.ndimage import distance_transform_edt

from lovaszseg.data.files import width_map_path
from lovaszseg.data.synthetic.cache import SyntheticData
from lovaszseg.data.synthetic.drawing import sample_rng, save_jpeg, save_png, smooth_noise
from lovaszseg.data.synthetic.knobs import check_keys, merge_knobs
from lovaszseg.runs.atomic import write_text_atomic

ROAD_PRESETS: dict[str, dict[str, Any]] = {
    "easy": {
        "coverage": (0.035, 0.055),  # fraction of road pixels per image
        "road_width": (4, 8),  # px, at the generated image size
        "thin_fraction": 0.0,  # roads drawn 1-2 px wide
        "faint_fraction": 0.0,  # roads blended weakly into the ground
        "faint_strength": (0.25, 0.45),  # opacity of a faint road
        "contrast": 1.0,  # global contrast (1 = unchanged)
        "tree_density": 0.0,  # tree clusters per 100x100 px, half of them on roads
        "shadow_count": 0,  # shadow polygons per image
        "building_density": 0.4,  # buildings per 100x100 px
        "lookalike_fraction": 0.0,  # buildings roofed in road colour
        "label_noise": 0.0,  # probability of flipping a label pixel on a road edge
        "noise_sigma": 4.0,  # sensor noise, grey levels
    },
    "medium": {
        "coverage": (0.03, 0.06),
        "road_width": (3, 7),
        "thin_fraction": 0.15,
        "faint_fraction": 0.2,
        "faint_strength": (0.3, 0.5),
        "contrast": 0.8,
        "tree_density": 0.6,
        "shadow_count": 2,
        "building_density": 0.7,
        "lookalike_fraction": 0.15,
        "label_noise": 0.1,
        "noise_sigma": 6.0,
    },
    "hard": {
        "coverage": (0.03, 0.06),
        "road_width": (2, 6),
        "thin_fraction": 0.35,
        "faint_fraction": 0.4,
        "faint_strength": (0.2, 0.4),
        "contrast": 0.6,
        "tree_density": 1.5,
        "shadow_count": 4,
        "building_density": 1.0,
        "lookalike_fraction": 0.35,
        "label_noise": 0.2,
        "noise_sigma": 8.0,
    },
}
ROAD_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "num_train": 96,
    "num_val": 32,
    "image_size": 384,
    "layout": "list",  # "list": MiniDeepGlobe list files; "original": *_sat.jpg / *_mask.png
    "difficulty": "easy",
}
_LAND = np.array(
    [[86, 112, 62], [148, 138, 92], [118, 98, 76], [62, 84, 48], [160, 150, 120]], np.float32
)
_ROOFS = np.array([[150, 70, 60], [110, 110, 120], [200, 190, 170], [90, 60, 50]], np.float32)


def road_settings(synthetic: Mapping[str, Any]) -> dict[str, Any]:
    """Complete, validated generator settings: defaults, then the preset, then explicit knobs."""
    check_keys(synthetic, set(ROAD_DEFAULTS) | set(ROAD_PRESETS["easy"]), "synthetic_roads")
    settings = {**ROAD_DEFAULTS, **{k: v for k, v in synthetic.items() if k in ROAD_DEFAULTS}}
    if settings["layout"] not in ("list", "original"):
        raise ValueError(
            f"synthetic.layout must be 'list' or 'original', got {settings['layout']!r}"
        )
    for key in ("num_train", "num_val", "image_size"):
        if int(settings[key]) < 1:
            raise ValueError(f"synthetic.{key} must be >= 1, got {settings[key]}")
    return {**settings, **merge_knobs(ROAD_PRESETS, synthetic)}


def _road_path(rng: np.random.Generator, size: int, start: np.ndarray | None) -> np.ndarray:
    """A smooth curve from an edge (or from `start`, a point on an earlier road) to another edge."""

    def edge_point() -> np.ndarray:
        side, t = rng.integers(4), rng.uniform(0, size)
        return np.array([[t, 0], [size, t], [t, size], [0, t]][side], np.float32)

    a = edge_point() if start is None else start
    b = edge_point()
    while np.linalg.norm(b - a) < size * 0.5:
        b = edge_point()
    steps = np.linspace(0, 1, int(rng.integers(3, 6)))[:, None]
    points = a + (b - a) * steps
    normal = np.array([a[1] - b[1], b[0] - a[0]], np.float32) / max(np.linalg.norm(b - a), 1)
    points[1:-1] += normal * rng.normal(0, size * 0.12, (len(points) - 2, 1))
    for _ in range(3):  # Chaikin corner cutting: a polyline that bends like a road
        q = 0.75 * points[:-1] + 0.25 * points[1:]
        r = 0.25 * points[:-1] + 0.75 * points[1:]
        points = np.concatenate([points[:1], np.stack([q, r], 1).reshape(-1, 2), points[-1:]])
    return points


def _blend(image: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Paint `colour` over `image` with per-pixel opacity `alpha`, touching only covered pixels."""
    covered = alpha > 0
    a = alpha[covered][:, None]
    image[covered] = image[covered] * (1 - a) + a * colour


def nearest_road_width(drawn_width: np.ndarray) -> np.ndarray:
    """For every pixel, the width of the nearest pixel with a road drawn on it (0: no road)."""
    if not drawn_width.any():
        return np.zeros_like(drawn_width)
    _distance, (rows, cols) = distance_transform_edt(drawn_width == 0, return_indices=True)
    return drawn_width[rows, cols]


def render_road_scene(
    rng: np.random.Generator, size: int, knobs: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One aerial-like RGB image [S,S,3] uint8, its road label [S,S] in {0, 1}, and the width of
    the nearest road per pixel [S,S] uint8 (where roads cross, the wider one's)."""
    shape = (size, size)
    area = size * size / 1e4
    weights = np.stack([smooth_noise(rng, shape, int(rng.integers(2, 6))) for _ in _LAND], -1) ** 4
    image = (weights / weights.sum(-1, keepdims=True)) @ _LAND  # a blend of land-cover colours
    image += (smooth_noise(rng, shape, max(size // 12, 4))[..., None] - 0.5) * 40

    for _ in range(rng.poisson(knobs["building_density"] * area)):
        centre = rng.uniform(0, size, 2)
        half = rng.uniform(4, 12, 2) * size / 384
        box = cv2.boxPoints(((*centre,), (*(2 * half),), float(rng.uniform(0, 90))))
        lookalike = rng.random() < knobs["lookalike_fraction"]
        roof = np.full(3, rng.uniform(150, 185)) if lookalike else _ROOFS[rng.integers(len(_ROOFS))]
        cv2.fillPoly(image, [np.round(box).astype(np.int32)], (roof + rng.normal(0, 8, 3)).tolist())

    label = np.zeros(shape, np.uint8)
    drawn_width = np.zeros(shape, np.uint8)
    stroke = np.zeros(shape, np.uint8)
    alpha = np.zeros(shape, np.float32)
    target = rng.uniform(*knobs["coverage"]) * size * size
    paths: list[np.ndarray] = []
    while label.sum() < target and len(paths) < 24:
        start = None
        if paths and rng.random() < 0.5:
            previous = paths[rng.integers(len(paths))]
            start = previous[rng.integers(len(previous))]
        path = _road_path(rng, size, start)
        paths.append(path)
        thin = rng.random() < knobs["thin_fraction"]
        low, high = (1, 2) if thin else knobs["road_width"]
        width = int(rng.integers(low, high + 1))
        faint = rng.random() < knobs["faint_fraction"]
        strength = rng.uniform(*knobs["faint_strength"]) if faint else rng.uniform(0.85, 1.0)
        points = [np.round(path * 16).astype(np.int32)]
        alpha[:] = 0
        cv2.polylines(alpha, points, False, 1.0, width, cv2.LINE_AA, shift=4)
        colour = rng.uniform(150, 190) + rng.normal(0, 6, 3)
        _blend(image, np.clip(alpha, 0, 1) * strength, colour)
        stroke[:] = 0
        cv2.polylines(stroke, points, False, 1, width, cv2.LINE_8, shift=4)
        label |= stroke
        np.maximum(drawn_width, stroke * width, out=drawn_width)

    road_pixels = np.argwhere(label > 0)
    for _ in range(rng.poisson(knobs["tree_density"] * area)):
        on_road = len(road_pixels) and rng.random() < 0.5
        centre = (
            road_pixels[rng.integers(len(road_pixels))][::-1]
            if on_road
            else rng.uniform(0, size, 2)
        )
        crown = np.array([30, 62, 28]) + rng.normal(0, 6, 3)
        for _ in range(int(rng.integers(1, 5))):
            c = np.round(centre + rng.normal(0, 4, 2)).astype(int)
            cv2.circle(image, (int(c[0]), int(c[1])), int(rng.integers(3, 9)), crown.tolist(), -1)
    for _ in range(int(knobs["shadow_count"])):
        corners = rng.uniform(0, size, (1, 2)) + rng.normal(0, size * 0.08, (4, 2))
        shade = np.zeros(shape, np.float32)
        cv2.fillPoly(shade, [np.round(corners).astype(np.int32)], 1.0)
        image *= 1 - cv2.GaussianBlur(shade, (0, 0), 2)[..., None] * rng.uniform(0.3, 0.55)

    mean = image.mean()
    noise = rng.standard_normal(image.shape, dtype=np.float32) * knobs["noise_sigma"]
    image = mean + (image - mean) * knobs["contrast"] + noise
    if knobs["label_noise"] > 0:
        kernel = np.ones((3, 3), np.uint8)
        edge = cv2.dilate(label, kernel) != cv2.erode(label, kernel)
        flip = edge & (rng.random(shape) < knobs["label_noise"])
        label[flip] = 1 - label[flip]
    return np.clip(image, 0, 255).astype(np.uint8), label, nearest_road_width(drawn_width)


def _jpeg_like(mask: np.ndarray) -> np.ndarray:
    """A 0/255 mask after a JPEG round trip: the near-binary values the DeepGlobe originals hold."""
    _ok, data = cv2.imencode(".jpg", mask * 255, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)


def write_synthetic_roads(root: Path, settings: Mapping[str, Any]) -> None:
    """Write the dataset into `root` in the requested DeepGlobe layout."""
    size = int(settings["image_size"])
    lists: dict[str, list[str]] = {"train": [], "val": []}
    for split in ("train", "val"):
        for i in range(int(settings[f"num_{split}"])):
            rng = sample_rng(settings["seed"], split, i)
            image, label, width = render_road_scene(rng, size, settings)
            if settings["layout"] == "list":
                stem = f"{split}/{i:04d}"
                save_jpeg(root / f"{stem}_sat.jpg", image)
                save_png(root / f"{stem}_mask.png", label)
                lists[split].append(f"{stem}_sat.jpg|{stem}_mask.png")
            else:  # the original release: every pair in train/, the split is drawn later
                stem = f"train/{(0 if split == 'train' else 500000) + 100000 + i}"
                save_jpeg(root / f"{stem}_sat.jpg", image)
                save_png(root / f"{stem}_mask.png", _jpeg_like(label))
            save_png(width_map_path(root / f"{stem}_mask.png"), width)
    if settings["layout"] == "list":
        for split, lines in lists.items():
            write_text_atomic(root / f"{split}.txt", "\n".join(lines) + "\n")


class SyntheticRoads(SyntheticData):
    """Synthetic aerial roads for `DeepGlobeRoadDataModule`; settings as in `road_settings`."""

    name = "synthetic_roads/2"  # version 2 writes width maps: older caches are regenerated
    complete = staticmethod(road_settings)
    write_into = staticmethod(write_synthetic_roads)
