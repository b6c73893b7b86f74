"""Dataset files on disk: list-file parsing and decoding that always names the offending file.

A bare `PIL.UnidentifiedImageError` raised inside a DataLoader worker tells the user nothing about
which of 10,000 files is broken; everything here raises `ValueError` with the path (and, for list
files, the line).

Besides image and label, a road label may have a width map beside it (``<stem>_width.png`` next
to ``<stem>_mask.png``): for every pixel, the width in px of the road nearest to it, 0 where the
image has no road. Whoever writes one (the synthetic roads) and whoever reads one (the thin/wide
road IoU) agree on it here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

WIDTH_SUFFIX = "_width.png"
"""Replaces a road label's ``_mask.png`` to name its width map."""


@dataclass(frozen=True)
class Sample:
    """One image/label pair; `source` says where it was listed (``train.txt:12``) for messages."""

    name: str
    image: Path
    label: Path
    source: str = ""


@dataclass(frozen=True)
class Problem:
    """Something wrong with the dataset, and where: ``file``, ``file:line``."""

    location: str
    message: str


def parse_list_file(
    list_path: Path, root: Path, separator: str = "|"
) -> tuple[list[Sample], list[Problem]]:
    """Parse `image<sep>label` lines (paths relative to `root`), collecting every bad line."""
    if not list_path.is_file():
        raise ValueError(f"list file {list_path} does not exist")
    samples: list[Sample] = []
    problems: list[Problem] = []
    lines = list_path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        source = f"{list_path}:{number}"
        text = line.strip()
        if not text:
            continue
        parts = [p.strip() for p in text.split(separator)]
        if len(parts) != 2 or not all(parts):
            problems.append(Problem(source, f"expected 'image{separator}label', got {text!r}"))
            continue
        image, label = (root / p for p in parts)
        samples.append(Sample(name=Path(parts[0]).stem, image=image, label=label, source=source))
    return samples, problems


def require_files(samples: Iterable[Sample]) -> None:
    """Fail before training when any listed image or label is missing, naming them all."""
    missing = [
        f"{p} (listed at {s.source})" if s.source else str(p)
        for s in samples
        for p in (s.image, s.label)
        if not p.is_file()
    ]
    if missing:
        shown = "\n  ".join(missing[:20])
        more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise ValueError(f"{len(missing)} listed file(s) do not exist:\n  {shown}{more}")


def _open(path: Path) -> Image.Image:
    """The decoded image, its file closed; any failure becomes a ValueError naming `path`."""
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except FileNotFoundError:
        raise ValueError(f"file {path} does not exist") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"cannot decode {path}: {error}") from error


def read_image(path: Path) -> np.ndarray:
    """An RGB uint8 array [H, W, 3]."""
    image = _open(path)
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def read_label(path: Path) -> np.ndarray:
    """The stored label values: palette indices or grey levels [H, W], or [H, W, C] if colour."""
    image = _open(path)
    if image.mode in ("P", "L"):
        return np.asarray(image)
    if image.mode in ("I", "I;16", "F"):
        raise ValueError(f"label {path} has mode {image.mode}; expected 8-bit palette or grey PNG")
    return np.asarray(image.convert("RGB"))


def width_map_path(label: Path) -> Path:
    """Where the width map of the road label ``<stem>_mask.png`` is: ``<stem>_width.png``."""
    if not label.name.endswith("_mask.png"):
        raise ValueError(f"label {label} is not named <stem>_mask.png, so it has no width map")
    return label.with_name(label.name.removesuffix("_mask.png") + WIDTH_SUFFIX)


def read_width_map(path: Path) -> np.ndarray:
    """The width of the nearest road per pixel, uint8 [H, W] (an 8-bit grey PNG)."""
    image = _open(path)
    if image.mode != "L":
        raise ValueError(f"width map {path} has mode {image.mode}; expected an 8-bit grey PNG")
    return np.asarray(image)
