"""``python -m lovaszseg.export ckpt_path=... format=onnx|torchscript``: a deployable network.

The exported model takes a normalised image batch ``[B, 3, H, W]`` (float32, any H and W) and
returns logits ``[B, C, H, W]`` (C = 1 for binary tasks: road where > 0), padding to the
network's stride and cropping back inside, exactly as training and evaluation do. After
writing, the file is run once (onnxruntime / torch.jit) against the checkpoint's own network on
an image of another size, and the maximum absolute difference of the logits is printed.

An ONNX file carries its weights inside, so it is the one file to copy: PyTorch's exporter
writes them to a ``<name>.data`` file beside it by default, which a copied ``.onnx`` then lacks.
Only a network past protobuf's 2 GB limit for one file keeps them outside, and the printed line
says so. The exporter's own progress lines and the INFO logs of its ONNX passes are silenced:
the line a user reads is the last one.

Lightning and the network library are imported inside ``export``: ``--help`` must not wait
seconds for them (torch stays at the top: ``PaddedNet`` is a torch module).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from lovaszseg.config.console import run_for_people
from lovaszseg.config.job import run_main_of
from lovaszseg.config.resolvers import register_resolvers
from lovaszseg.inference.tiling import pad_to_multiple

if TYPE_CHECKING:
    from lovaszseg.module import SegmentationModule

log = logging.getLogger(__name__)
register_resolvers()

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
ONNX_TOOLCHAIN_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")
"""Loggers of the exporter and its graph passes: a hundred INFO lines an export, none a user acts on."""


class PaddedNet(nn.Module):
    """``net`` on inputs of any size: zero-padded to ``multiple``, logits cropped back."""

    def __init__(self, net: nn.Module, multiple: int) -> None:
        super().__init__()
        self.net = net
        self.multiple = multiple

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2], images.shape[-1]
        return self.net(pad_to_multiple(images, self.multiple))[..., :height, :width]


@contextlib.contextmanager
def quiet_loggers(names: tuple[str, ...], level: int = logging.WARNING) -> Iterator[None]:
    """Raise the named loggers (and their children) to ``level`` for the block, then restore."""
    loggers = [logging.getLogger(name) for name in names]
    before = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, old in zip(loggers, before, strict=True):
            logger.setLevel(old)


def external_data_files(path: Path) -> list[Path]:
    """The files beside the ONNX model ``path`` that hold some of its weights (none when the
    weights are inside it)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    locations = {
        ExternalDataInfo(tensor).location
        for tensor in model.graph.initializer
        if uses_external_data(tensor)
    }
    return sorted(path.parent / location for location in locations)


def export_onnx(model: PaddedNet, example: torch.Tensor, path: Path, opset: int) -> None:
    """Write ``model`` to ``path`` with its weights inside (past protobuf's 2 GB limit, the
    exporter moves them to ``<name>.data`` beside it: see ``external_data_files``)."""
    # an earlier export's weights file: the new model does not refer to it
    path.with_name(path.name + ".data").unlink(missing_ok=True)
    dims = {
        0: torch.export.Dim("batch"),
        2: torch.export.Dim("height"),
        3: torch.export.Dim("width"),
    }
    with quiet_loggers(ONNX_TOOLCHAIN_LOGGERS):
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=True,
            opset_version=opset,
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes={"images": dims},
            external_data=False,
            verbose=False,
        )


def export_torchscript(model: PaddedNet, example: torch.Tensor, path: Path) -> None:
    """Trace the network (smp models are not scriptable), script the padding around it."""
    traced = torch.jit.trace(model.net, pad_to_multiple(example, model.multiple))
    torch.jit.script(PaddedNet(traced, model.multiple)).save(str(path))


def run_exported(path: Path, fmt: str, images: torch.Tensor) -> np.ndarray:
    """The exported file's logits for ``images``, run by its own runtime."""
    if fmt == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # errors only: its graph-optimisation notes are not for users
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        return session.run(None, {"image": images.numpy()})[0]
    with torch.no_grad():
        return torch.jit.load(str(path), map_location="cpu")(images).numpy()


def max_abs_difference(
    module: SegmentationModule, path: Path, fmt: str, images: torch.Tensor
) -> float:
    with torch.no_grad():
        expected = module(images).numpy()
    return float(np.abs(run_exported(path, fmt, images) - expected).max())


def export(cfg: DictConfig) -> tuple[Path, float]:
    """Write the model in ``cfg.format``; returns its path and the parity check's max abs diff."""
    from lovaszseg.module import SegmentationModule

    if cfg.format not in FORMATS:
        raise ValueError(f"format={cfg.format}: expected one of {', '.join(FORMATS)}")
    ckpt = Path(cfg.ckpt_path)
    module = SegmentationModule.load_from_checkpoint(
        str(ckpt), weights_only=not cfg.trust_checkpoint
    ).eval()
    model = PaddedNet(module.net, module.pad_multiple).eval()
    path = Path(cfg.output) if cfg.output else ckpt.with_suffix(FORMATS[cfg.format])
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(1, 3, cfg.height, cfg.width, generator=generator)
    with torch.no_grad():
        if cfg.format == "onnx":
            export_onnx(model, example, path, cfg.opset)
        else:
            export_torchscript(model, example, path)
    # another batch size and a size off the stride: the shapes really are dynamic
    check = torch.randn(2, 3, cfg.height + 37, cfg.width - 19, generator=generator)
    difference = max_abs_difference(module, path, cfg.format, check)
    print(
        f"wrote {path} ({file_contents(path, cfg.format)}):"
        f" image [B,3,H,W] -> logits [B,{module.net_config['classes']},H,W];"
        f" max |exported - checkpoint| on a {tuple(check.shape)} batch = {difference:.3g}"
    )
    return path, difference


def file_contents(path: Path, fmt: str) -> str:
    """What the written file holds, and whether it is all a user must copy."""
    size = f"{path.stat().st_size / 1e6:.1f} MB"
    outside = external_data_files(path) if fmt == "onnx" else []
    if not outside:
        return f"{fmt}, {size}, weights inside: the file runs alone"
    names = ", ".join(str(p) for p in outside)
    return (
        f"{fmt}, {size}; its weights are in {names}, past protobuf's 2 GB limit for one file:"
        " keep the files together"
    )


@hydra.main(config_path="pkg://lovaszseg.conf", config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_for_people(export, cfg)


if __name__ == "__main__":
    run_main_of("lovaszseg.export")
