"""Synthetic 21-class scenes written in the VOCdevkit/VOC2012 layout.

Each of the 20 object classes is a shape (5 kinds) with a texture (4 kinds) and a colour of its
own; objects carry VOC's void band (255) on their boundaries and are saved as palette PNGs. At
"easy" every cue identifies the class; the "hard" knobs take cues away as real VOC does: small
objects, objects that overlap and occlude, colours shared between classes (only shape and texture
tell them apart), background clutter, low contrast and label edges that miss the object.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lovaszseg.data.synthetic.cache import SyntheticData
from lovaszseg.data.synthetic.drawing import sample_rng, save_jpeg, save_png, smooth_noise
from lovaszseg.data.synthetic.knobs import check_keys, merge_knobs
from lovaszseg.data.voc_classes import VOC_CLASSES, voc_palette
from lovaszseg.runs.atomic import write_text_atomic

VOC_PRESETS: dict[str, dict[str, Any]] = {
    "easy": {
        "objects": (1, 3),  # objects per image
        "object_scale": (0.3, 0.6),  # object size as a fraction of the shorter side
        "overlap": False,  # may objects occlude one another
        "colour_sharing": 0.0,  # probability an object takes another class's colour
        "clutter": 0,  # unlabelled background blobs per image
        "contrast": 1.0,
        "noise_sigma": 4.0,
        "void_width": 3,  # px of 255 band on object boundaries
        "label_noise": 0,  # max px the label edge is grown or shrunk from the object's
    },
    "medium": {
        "objects": (1, 4),
        "object_scale": (0.15, 0.5),
        "overlap": True,
        "colour_sharing": 0.3,
        "clutter": 3,
        "contrast": 0.8,
        "noise_sigma": 6.0,
        "void_width": 3,
        "label_noise": 1,
    },
    "hard": {
        "objects": (2, 6),
        "object_scale": (0.08, 0.35),
        "overlap": True,
        "colour_sharing": 0.6,
        "clutter": 6,
        "contrast": 0.6,
        "noise_sigma": 8.0,
        "void_width": 3,
        "label_noise": 2,
    },
}
VOC_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "num_train": 96,
    "num_val": 32,
    "image_size": (224, 320),  # min / max side; sizes vary per image as VOC's do
    "difficulty": "easy",
}
SHAPES = ("ellipse", "box", "triangle", "star", "cross")
TEXTURES = ("plain", "stripes", "dots", "checker")


def voc_settings(synthetic: Mapping[str, Any]) -> dict[str, Any]:
    """Complete, validated generator settings: defaults, then the preset, then explicit knobs."""
    check_keys(synthetic, set(VOC_DEFAULTS) | set(VOC_PRESETS["easy"]), "synthetic_voc")
    settings = {**VOC_DEFAULTS, **{k: v for k, v in synthetic.items() if k in VOC_DEFAULTS}}
    size = settings["image_size"]
    settings["image_size"] = (int(size), int(size)) if np.isscalar(size) else tuple(map(int, size))
    if not 32 <= settings["image_size"][0] <= settings["image_size"][1]:
        raise ValueError(f"synthetic.image_size must be >= 32 (or a min <= max pair), got {size}")
    for key in ("num_train", "num_val"):
        if int(settings[key]) < 1:
            raise ValueError(f"synthetic.{key} must be >= 1, got {settings[key]}")
    return {**settings, **merge_knobs(VOC_PRESETS, synthetic)}


def class_colour(cls: int) -> np.ndarray:
    """A hue of its own for each class 1..20, at fixed saturation and value."""
    hsv = np.uint8([[[round((cls - 1) * 9), 200, 210]]])  # OpenCV hue runs 0..179
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _shape_mask(
    rng: np.random.Generator, kind: str, shape: tuple[int, int], centre, radius
) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cx, cy = centre
    angle = rng.uniform(0, 2 * np.pi)
    if kind == "ellipse":
        axes = (int(radius), int(radius * rng.uniform(0.5, 0.9)))
        cv2.ellipse(mask, (int(cx), int(cy)), axes, np.degrees(angle), 0, 360, 1, -1)
        return mask
    if kind == "star":
        t = angle + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2, radius * 0.45, radius)
    elif kind == "cross":
        arm = 0.35  # half-width of the arms, as a fraction of the radius
        xy = np.array(
            [
                (1, arm),
                (arm, arm),
                (arm, 1),
                (-arm, 1),
                (-arm, arm),
                (-1, arm),
                (-1, -arm),
                (-arm, -arm),
                (-arm, -1),
                (arm, -1),
                (arm, -arm),
                (1, -arm),
            ]
        )
        t = np.arctan2(xy[:, 1], xy[:, 0]) + angle
        r = radius * np.hypot(xy[:, 0], xy[:, 1]) / np.sqrt(2) * 1.2
    else:
        corners = 4 if kind == "box" else 3
        t = angle + np.arange(corners) * 2 * np.pi / corners
        r = np.full(corners, radius * 1.1)
    polygon = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    return mask


def _texture(rng: np.random.Generator, kind: str, shape: tuple[int, int]) -> np.ndarray:
    """A multiplicative pattern in [0.55, 1] that marks the class when colour cannot."""
    if kind == "plain":
        return np.ones(shape, np.float32)
    y, x = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    period = rng.uniform(6, 10)
    if kind == "stripes":
        theta = rng.uniform(0, np.pi)
        on = np.sin((x * np.cos(theta) + y * np.sin(theta)) * 2 * np.pi / period) > 0
    elif kind == "dots":
        on = np.hypot((x % period) - period / 2, (y % period) - period / 2) > period * 0.3
    else:
        on = ((x // period + y // period) % 2) == 0
    return np.where(on, 1.0, 0.55).astype(np.float32)


def render_voc_scene(
    rng: np.random.Generator, shape: tuple[int, int], knobs: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """One RGB image [H,W,3] uint8 and its label [H,W]: 0 background, 1..20 objects, 255 void."""
    height, width = shape
    backdrop = np.stack([smooth_noise(rng, shape, int(rng.integers(2, 5))) for _ in range(3)], -1)
    image = 60 + backdrop * rng.uniform(60, 140, 3)
    image += (smooth_noise(rng, shape, max(min(shape) // 10, 4))[..., None] - 0.5) * 30
    for _ in range(int(knobs["clutter"])):  # unlabelled things: background is not empty in VOC
        blob = _shape_mask(
            rng, "ellipse", shape, rng.uniform(0, [width, height]), rng.uniform(5, 30)
        )
        image[blob > 0] = rng.uniform(40, 220, 3)

    label = np.zeros(shape, np.uint8)
    void = np.zeros(shape, bool)
    occupied = np.zeros(shape, bool)
    side = min(shape)
    band = np.ones((2 * int(knobs["void_width"]) + 1,) * 2, np.uint8)
    for _ in range(int(rng.integers(knobs["objects"][0], knobs["objects"][1] + 1))):
        for _attempt in range(20):
            radius = rng.uniform(*knobs["object_scale"]) * side / 2
            centre = rng.uniform(radius, [width - radius, height - radius])
            cls = int(rng.integers(1, len(VOC_CLASSES)))
            mask = _shape_mask(rng, SHAPES[(cls - 1) % 5], shape, centre, radius)
            if mask.any() and (knobs["overlap"] or not (occupied & (mask > 0)).any()):
                break
        else:
            continue
        colour_cls = cls
        if rng.random() < knobs["colour_sharing"]:
            colour_cls = int(rng.integers(1, len(VOC_CLASSES)))
        pattern = _texture(rng, TEXTURES[(cls - 1) // 5], shape)
        colour = class_colour(colour_cls) + rng.normal(0, 10, 3)
        inside = mask > 0
        image[inside] = colour * pattern[inside][:, None]
        drawn = mask
        if knobs["label_noise"]:
            grow = int(rng.integers(-knobs["label_noise"], knobs["label_noise"] + 1))
            kernel = np.ones((2 * abs(grow) + 1,) * 2, np.uint8)
            drawn = (cv2.dilate if grow > 0 else cv2.erode)(mask, kernel) if grow else mask
        label[drawn > 0] = cls
        void[drawn > 0] = False  # an object in front hides the band of the one behind
        void |= (cv2.dilate(drawn, band) > 0) & ~(cv2.erode(drawn, band) > 0)
        occupied |= inside

    mean = image.mean()
    noise = rng.standard_normal(image.shape, dtype=np.float32) * knobs["noise_sigma"]
    image = mean + (image - mean) * knobs["contrast"] + noise
    label[void] = 255
    return np.clip(image, 0, 255).astype(np.uint8), label


def write_synthetic_voc(root: Path, settings: Mapping[str, Any]) -> None:
    """Write `root/VOCdevkit/VOC2012` with JPEGImages, palette SegmentationClass and ImageSets."""
    voc = root / "VOCdevkit" / "VOC2012"
    palette = voc_palette()
    low, high = settings["image_size"]
    for split in ("train", "val"):
        names = []
        for i in range(int(settings[f"num_{split}"])):
            rng = sample_rng(settings["seed"], split, i)
            shape = (int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1)))
            image, label = render_voc_scene(rng, shape, settings)
            name = f"2012_{(0 if split == 'train' else 500000) + i:06d}"
            save_jpeg(voc / "JPEGImages" / f"{name}.jpg", image)
            save_png(voc / "SegmentationClass" / f"{name}.png", label, palette)
            names.append(name)
        lists = voc / "ImageSets" / "Segmentation"
        lists.mkdir(parents=True, exist_ok=True)
        write_text_atomic(lists / f"{split}.txt", "\n".join(names) + "\n")


class SyntheticVOC(SyntheticData):
    """Synthetic VOC-like scenes for `VOCSegmentationDataModule`; settings as in `voc_settings`."""

    name = "synthetic_voc"
    complete = staticmethod(voc_settings)
    write_into = staticmethod(write_synthetic_voc)
