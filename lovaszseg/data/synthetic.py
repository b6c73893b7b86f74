"""Generate-once caching of synthetic datasets in their data root.

A synthetic dataset is written into `root` the first time it is needed and read from there
afterwards. `root/synthetic.json` records what was generated; when the requested settings differ
(a `debug=fast` run before a full one, a different difficulty) the generator's own output is
replaced. A directory without that manifest is never touched: it is the user's data. Generation
goes to a temporary sibling and is renamed into place under a file lock, so parallel runs
(multirun, DDP ranks) never see half a dataset.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

MANIFEST = "synthetic.json"


def merge_knobs(presets: Mapping[str, Mapping[str, Any]], settings: Mapping[str, Any]) -> dict:
    """Difficulty preset named by `settings["difficulty"]`, overridden by any knob in `settings`
    that is not None (the configs list every knob as null, so Hydra overrides need no `+`)."""
    name = settings.get("difficulty") or "easy"
    if name not in presets:
        raise ValueError(f"unknown difficulty {name!r}; expected one of {sorted(presets)}")
    knobs = dict(presets[name])
    for key, value in settings.items():
        if key in knobs and value is not None:
            knobs[key] = tuple(value) if isinstance(knobs[key], tuple) else value
    return knobs


def check_keys(settings: Mapping[str, Any], allowed: set[str], where: str) -> None:
    """Reject typos in generator settings instead of silently ignoring them."""
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ValueError(
            f"unknown {where} setting(s) {unknown}; expected some of {sorted(allowed)}"
        )


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """An independent stream per sample, so any one sample is reproducible on its own."""
    return np.random.default_rng([int(seed), {"train": 0, "val": 1}[split], int(index)])


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    lock_path = root.parent / f".{root.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_manifest(root: Path) -> dict | None:
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def ensure_generated(
    root: Path | str,
    generator: str,
    settings: Mapping[str, Any],
    write: Callable[[Path], None],
) -> bool:
    """Make `root` hold the synthetic dataset `write` produces; True when it (re)generated."""
    root = Path(root).expanduser().resolve()
    wanted = {"generator": generator, "settings": json.loads(json.dumps(dict(settings)))}
    if _read_manifest(root) == wanted:
        return False
    root.parent.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        manifest = _read_manifest(root)
        if manifest == wanted:
            return False
        if root.exists() and any(root.iterdir()) and manifest is None:
            log.info("%s is not empty and has no %s: reading it as it is", root, MANIFEST)
            return False
        if manifest is not None:
            log.warning("regenerating %s: settings changed from %s", root, manifest["settings"])
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
        try:
            write(tmp)
            atomic_write_text(tmp / MANIFEST, json.dumps(wanted, indent=2) + "\n")
            if root.exists():
                old = root.parent / f".{root.name}.old-{os.getpid()}"
                os.replace(root, old)
                shutil.rmtree(old)
            os.replace(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("generated synthetic %s in %s", generator, root)
    return True


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_jpeg(path: Path, rgb: np.ndarray, quality: int = 92) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f"could not write {path}")


def save_png(path: Path, values: np.ndarray, palette: list[int] | None = None) -> None:
    """An 8-bit grey PNG, or a palette PNG when `palette` is given (VOC's label format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(values.astype(np.uint8), mode="P" if palette else "L")
    if palette:
        image.putpalette(palette)
    image.save(path, optimize=False)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth random field in [0, 1]: a `cells`x`cells` grid of noise upsampled bicubically."""
    grid = rng.random((cells + 3, cells + 3)).astype(np.float32)
    field = cv2.resize(grid, (shape[1] + 64, shape[0] + 64), interpolation=cv2.INTER_CUBIC)
    field = field[32 : 32 + shape[0], 32 : 32 + shape[1]]
    lo, hi = float(field.min()), float(field.max())
    return (field - lo) / max(hi - lo, 1e-6)
