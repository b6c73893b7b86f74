"""``python -m lovaszseg.export ckpt_path=... format=onnx|torchscript``: a deployable network.

The exported model takes a normalised image batch ``[B, 3, H, W]`` (float32, any H and W) and
returns logits ``[B, C, H, W]`` (C = 1 for binary tasks: road where > 0), padding to the
network's stride and cropping back inside, exactly as training and evaluation do. After
writing, the file is run once (onnxruntime / torch.jit) against the checkpoint's own network on
an image of another size, and the maximum absolute difference of the logits is printed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from lovaszseg.config.resolvers import register_resolvers
from lovaszseg.inference.tiling import pad_to_multiple
from lovaszseg.module import SegmentationModule, load_checkpoint

log = logging.getLogger(__name__)
register_resolvers()

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}


class PaddedNet(nn.Module):
    """``net`` on inputs of any size: zero-padded to ``multiple``, logits cropped back."""

    def __init__(self, net: nn.Module, multiple: int) -> None:
        super().__init__()
        self.net = net
        self.multiple = multiple

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2], images.shape[-1]
        return self.net(pad_to_multiple(images, self.multiple))[..., :height, :width]


def export_onnx(model: PaddedNet, example: torch.Tensor, path: Path, opset: int) -> None:
    dims = {
        0: torch.export.Dim("batch"),
        2: torch.export.Dim("height"),
        3: torch.export.Dim("width"),
    }
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=True,
        opset_version=opset,
        input_names=["image"],
        output_names=["logits"],
        dynamic_shapes={"images": dims},
    )


def export_torchscript(model: PaddedNet, example: torch.Tensor, path: Path) -> None:
    """Trace the network (smp models are not scriptable), script the padding around it."""
    traced = torch.jit.trace(model.net, pad_to_multiple(example, model.multiple))
    torch.jit.script(PaddedNet(traced, model.multiple)).save(str(path))


def run_exported(path: Path, fmt: str, images: torch.Tensor) -> np.ndarray:
    """The exported file's logits for ``images``, run by its own runtime."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
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
    if cfg.format not in FORMATS:
        raise ValueError(f"format={cfg.format}: expected one of {', '.join(FORMATS)}")
    ckpt = Path(cfg.ckpt_path)
    module = SegmentationModule.from_checkpoint(load_checkpoint(str(ckpt)), str(ckpt)).eval()
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
        f"wrote {path} ({cfg.format}): image [B,3,H,W] -> logits [B,{module.net_config['classes']},H,W];"
        f" max |exported - checkpoint| on a {tuple(check.shape)} batch = {difference:.3g}"
    )
    return path, difference


@hydra.main(config_path="pkg://lovaszseg.conf", config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    export(cfg)


if __name__ == "__main__":
    main()
