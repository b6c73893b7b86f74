"""``python -m lovaszseg.predict ckpt_path=... input_dir=...``: a checkpoint on a folder of images.

Every image under ``input_dir`` (any size; large ones in overlapping tiles) gets a label PNG
(``labels/``: VOC palette, or 0 / 255 for binary tasks) and an overlay PNG (``overlays/``: the
prediction drawn over the image), mirroring the folder layout. A file that is not a readable
image is named and skipped; the rest of the folder is still predicted. The normalisation is the
training run's (its ``.hydra/config.yaml`` beside ``checkpoints/``) unless given.

torch, Lightning and the image code are imported inside the functions that use them: ``--help``
must not wait seconds for them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig, OmegaConf

from lovaszseg.config.console import run_for_people
from lovaszseg.config.job import run_main_of
from lovaszseg.config.resolvers import register_resolvers

if TYPE_CHECKING:
    import torch

    from lovaszseg.module import SegmentationModule

log = logging.getLogger(__name__)
register_resolvers()

DEFAULT_MEAN_STD = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])


@dataclass
class PredictSummary:
    """What a folder run did: files written per image, and each skipped file with the reason."""

    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def training_normalisation(ckpt_path: Path) -> tuple[list[float], list[float]] | None:
    """``data.eval_transform`` mean / std of the run that wrote ``RUN/checkpoints/<file>.ckpt``."""
    config_path = ckpt_path.resolve().parent.parent / ".hydra" / "config.yaml"
    if not config_path.is_file():
        return None
    transform = OmegaConf.load(config_path).data.get("eval_transform")
    if transform is None or "mean" not in transform or "std" not in transform:
        return None
    return list(transform.mean), list(transform.std)


def normalisation(cfg: DictConfig) -> tuple[list[float], list[float]]:
    if cfg.mean is not None and cfg.std is not None:
        return list(cfg.mean), list(cfg.std)
    found = training_normalisation(Path(cfg.ckpt_path))
    if found is None:
        log.warning(
            "no training config beside %s: normalising with mean=std=0.5 (set mean=[..] std=[..])",
            cfg.ckpt_path,
        )
        return DEFAULT_MEAN_STD
    return found


def input_files(input_dir: Path, output_dir: Path) -> list[Path]:
    """Every regular, non-hidden file under ``input_dir`` but outside ``output_dir``, sorted."""
    if not input_dir.is_dir():
        raise ValueError(f"input_dir={input_dir}: not a directory")
    outputs = output_dir.resolve()
    return sorted(
        p
        for p in input_dir.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(input_dir).parts)
        and outputs not in p.resolve().parents
    )


def output_name(path: Path, input_dir: Path, taken: set[Path]) -> Path:
    """``sub/a.jpg`` -> ``sub/a.png``; ``sub/a.jpg.png`` when another ``sub/a.*`` took that."""
    relative = path.relative_to(input_dir)
    name = relative.with_suffix(".png")
    return relative.with_name(relative.name + ".png") if name in taken else name


def choose_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def predict_folder(
    module: SegmentationModule,
    input_dir: Path,
    output_dir: Path,
    mean: Sequence[float],
    std: Sequence[float],
    tile: int,
    overlap: int,
    alpha: float,
) -> PredictSummary:
    """Label and overlay PNGs for every readable image of ``input_dir`` (see the module doc)."""
    import numpy as np
    import torch
    from rich.progress import track

    from lovaszseg.data.files import read_image
    from lovaszseg.inference.overlay import draw_labels, save_label_png, save_rgb_png
    from lovaszseg.inference.tiling import tiled_logits

    device = next(module.parameters()).device
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    summary = PredictSummary()
    files = input_files(input_dir, output_dir)
    taken: set[Path] = set()
    for path in track(files, description="predicting", total=len(files)):
        try:
            pixels = read_image(path)
        except ValueError as err:
            summary.skipped.append((path, str(err)))
            continue
        image = torch.as_tensor(pixels.copy(), device=device).permute(2, 0, 1)[None].float() / 255
        logits = tiled_logits(module, (image - mean_t) / std_t, tile, overlap)
        labels = module.predict_labels(logits)[0].cpu().numpy().astype(np.uint8)
        relative = output_name(path, input_dir, taken)
        save_label_png(labels, output_dir / "labels" / relative, module.task)
        save_rgb_png(draw_labels(pixels, labels, alpha), output_dir / "overlays" / relative)
        summary.written.append(relative)
        taken.add(relative)
    return summary


def predict(cfg: DictConfig) -> PredictSummary:
    """Run the checkpoint over ``cfg.input_dir``; fails only when no image could be predicted."""
    from lovaszseg.module import SegmentationModule

    module = SegmentationModule.load_from_checkpoint(
        cfg.ckpt_path, weights_only=not cfg.trust_checkpoint
    )
    module.eval().to(choose_device(cfg.device))
    mean, std = normalisation(cfg)
    input_dir, output_dir = Path(cfg.input_dir), Path(cfg.output_dir)
    summary = predict_folder(
        module, input_dir, output_dir, mean, std, cfg.tile, cfg.overlap, cfg.alpha
    )
    for path, reason in summary.skipped:
        print(f"skipped {path}: {reason}")
    if not summary.written:
        raise ValueError(
            f"input_dir={input_dir}: no image could be read "
            f"({len(summary.skipped)} file(s) skipped, listed above)"
        )
    print(
        f"{len(summary.written)} image(s) predicted into {output_dir}/labels and "
        f"{output_dir}/overlays; {len(summary.skipped)} skipped"
    )
    return summary


@hydra.main(config_path="pkg://lovaszseg.conf", config_name="predict", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_for_people(predict, cfg)


if __name__ == "__main__":
    run_main_of("lovaszseg.predict")
