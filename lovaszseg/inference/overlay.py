"""Pictures of a prediction: label PNGs in the dataset's own encoding, and overlays on the image.

Label PNGs keep the class index re-readable by the data modules: a VOC palette PNG for
multi-class tasks, grey 0 / 255 for binary ones (DeepGlobe's road masks). Overlays draw each
non-background class in its palette colour over the image, so a prediction can be judged by eye
offline; :func:`panel` puts image | truth | prediction side by side for evaluation, each
titled in a band above it, since two overlays of one image look alike until one reads which is
the truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from lovaszseg.data.voc_classes import voc_palette

IGNORE = 255
PANEL_TITLES = ("image", "truth", "prediction")
TITLE_BAND = 16
"""Rows of the white band above the panels that holds their titles (PIL's default 10 px font)."""
PANEL_GAP = 4


def save_label_png(labels: np.ndarray, path: Path, task: str) -> None:
    """Binary: grey 0 / 255; multi-class: palette PNG whose pixel values are the class indices."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if task == "binary":
        Image.fromarray(np.where(labels == 1, 255, 0).astype(np.uint8), mode="L").save(path)
        return
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(voc_palette())
    image.save(path)


def draw_labels(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``image`` (uint8 HxWx3) with every class but background (0) and ignore (255) blended in
    its VOC palette colour at opacity ``alpha``."""
    colours = np.asarray(voc_palette(), dtype=np.float32).reshape(256, 3)
    drawn = image.astype(np.float32)
    mask = (labels != 0) & (labels != IGNORE)
    drawn[mask] = (1 - alpha) * drawn[mask] + alpha * colours[labels[mask]]
    return drawn.round().astype(np.uint8)


def title_band(widths: Sequence[int], titles: Sequence[str], gap: int) -> np.ndarray:
    """A white band ``TITLE_BAND`` rows high with each title in black, centred over its column
    (columns of ``widths`` pixels, ``gap`` apart)."""
    band = Image.new("RGB", (sum(widths) + gap * (len(widths) - 1), TITLE_BAND), "white")
    draw = ImageDraw.Draw(band)
    font = ImageFont.load_default()
    left = 0
    for width, title in zip(widths, titles, strict=True):
        draw.text((left + width / 2, TITLE_BAND / 2), title, fill="black", font=font, anchor="mm")
        left += width + gap
    return np.asarray(band)


def panel(
    image: np.ndarray, truth: np.ndarray, prediction: np.ndarray, alpha: float = 0.5
) -> np.ndarray:
    """image | truth drawn over it | prediction drawn over it, ``PANEL_GAP`` white pixels apart,
    under a band titling them (``PANEL_TITLES``)."""
    gap = np.full((image.shape[0], PANEL_GAP, 3), 255, dtype=np.uint8)
    columns = [image, draw_labels(image, truth, alpha), draw_labels(image, prediction, alpha)]
    row = np.concatenate([columns[0], gap, columns[1], gap, columns[2]], axis=1)
    band = title_band([c.shape[1] for c in columns], PANEL_TITLES, PANEL_GAP)
    return np.concatenate([band, row], axis=0)


def denormalise(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised ``[3, H, W]`` float tensor back to uint8 HxWx3 pixels."""
    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).view(3, 1, 1)
    pixels = (image.detach().float().cpu() * std_t + mean_t).clamp(0, 1) * 255
    return pixels.round().byte().permute(1, 2, 0).numpy()


def save_rgb_png(pixels: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode="RGB").save(path)
