"""``lovaszseg.predict`` and ``lovaszseg.export`` end to end on a checkpoint trained here."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lovaszseg.inference.tiling import tile_starts, tiled_logits
from lovaszseg.module import SegmentationModule
from tests.train.entry import FAST

ENV = os.environ | {"NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}


def run_module(
    module: str, *args: str, cwd: Path, check: bool = True
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"{module} {' '.join(args)} failed:\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def roads_ckpt(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A binary (one-logit) DeepLabV3+ checkpoint from a one-epoch run on synthetic roads."""
    root = tmp_path_factory.mktemp("roads_run")
    run_module(
        "lovaszseg.train", *FAST, f"paths.data_dir={data_dir}", "trainer.max_epochs=1", cwd=root
    )
    (ckpt,) = root.glob("outputs/train/*/checkpoints/best.ckpt")
    return ckpt


def test_tiles_cover_the_image_with_the_requested_overlap():
    assert tile_starts(100, 128, 16) == [0]
    starts = tile_starts(700, 256, 32)
    assert starts[0] == 0 and starts[-1] == 700 - 256
    assert all(b - a <= 256 - 32 for a, b in itertools.pairwise(starts))
    with pytest.raises(ValueError, match="overlap < tile"):
        tile_starts(700, 64, 64)


def test_tiled_logits_of_a_pointwise_network_equal_the_whole_image():
    images = torch.randn(2, 3, 150, 230)

    def pointwise(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.sum(1), x[:, 0] * x[:, 1]], dim=1)

    tiled = tiled_logits(pointwise, images, tile=64, overlap=20)
    torch.testing.assert_close(tiled, pointwise(images))


def _write_input_folder(folder: Path, source: Path) -> None:
    image = Image.open(source).convert("RGB")
    big = Image.new("RGB", (700, 300))
    big.paste(image, (0, 0))
    big.paste(image, (380, 0))
    big.save(folder / "big.png")
    (folder / "sub").mkdir()
    image.crop((0, 0, 101, 77)).save(folder / "sub" / "odd.jpg", quality=95)
    image.crop((0, 0, 40, 30)).save(folder / "sub" / "odd.png")  # same stem: kept apart
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (folder / "empty").mkdir()


def test_predict_writes_labels_and_overlays_for_any_size_and_skips_bad_files(
    roads_ckpt, data_dir, tmp_path
):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _write_input_folder(inputs, next((data_dir / "synthetic_roads" / "val").glob("*_sat.jpg")))
    out = tmp_path / "out"
    proc = run_module(
        "lovaszseg.predict",
        f"ckpt_path={roads_ckpt}",
        f"input_dir={inputs}",
        f"output_dir={out}",
        "tile=256",  # big.png (700 x 300) goes in 3 x 2 overlapping tiles
        "overlap=32",
        cwd=tmp_path,
    )
    for name in ("broken.png", "notes.txt"):
        assert re.search(rf"skipped .*{re.escape(name)}", proc.stdout), proc.stdout
    assert "3 image(s) predicted" in proc.stdout and "2 skipped" in proc.stdout
    for relative, size in (
        ("big.png", (700, 300)),
        ("sub/odd.png", (101, 77)),  # odd.jpg came first
        ("sub/odd.png.png", (40, 30)),
    ):
        label = Image.open(out / "labels" / relative)
        overlay = Image.open(out / "overlays" / relative)
        assert (label.mode, label.size, overlay.mode, overlay.size) == ("L", size, "RGB", size)
        assert set(np.unique(np.asarray(label))) <= {0, 255}

    # the small image's labels are the checkpoint's own prediction, normalised as in training
    module = SegmentationModule.load_from_checkpoint(roads_ckpt).eval()
    pixels = np.asarray(Image.open(inputs / "sub" / "odd.jpg").convert("RGB"), dtype=np.float32)
    image = (torch.from_numpy(pixels).permute(2, 0, 1)[None] / 255 - 0.5) / 0.5
    with torch.no_grad():
        expected = module.predict_labels(module(image))[0].numpy() * 255
    np.testing.assert_array_equal(np.asarray(Image.open(out / "labels" / "sub/odd.png")), expected)


def test_predict_on_a_folder_without_images_fails_naming_it(roads_ckpt, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "readme.md").write_text("no images here")
    proc = run_module(
        "lovaszseg.predict",
        f"ckpt_path={roads_ckpt}",
        f"input_dir={tmp_path / 'in'}",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0
    assert "no image could be read" in proc.stderr and "readme.md" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fmt", "suffix", "tolerance"), [("torchscript", ".pt", 1e-5), ("onnx", ".onnx", 1e-3)]
)
def test_export_runs_in_its_runtime_like_the_checkpoint(
    roads_ckpt, tmp_path, fmt, suffix, tolerance
):
    target = tmp_path / f"model{suffix}"
    proc = run_module(
        "lovaszseg.export",
        f"ckpt_path={roads_ckpt}",
        f"format={fmt}",
        f"output={target}",
        "height=96",
        "width=128",
        cwd=tmp_path,
    )
    # one line, the parity check's: no progress or INFO lines from the toolchain
    (line,) = proc.stdout.splitlines()
    printed = float(re.search(r"max \|exported - checkpoint\| on .* = (\S+)", line).group(1))
    assert printed <= tolerance
    alone = tmp_path / "copied" / target.name  # the one file, without anything written beside it
    alone.parent.mkdir()
    shutil.copy(target, alone)

    # our own check, at a size and batch the export never saw
    module = SegmentationModule.load_from_checkpoint(roads_ckpt).eval()
    images = torch.randn(3, 3, 75, 161, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = module(images).numpy()
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(alone), providers=["CPUExecutionProvider"])
        exported = session.run(None, {"image": images.numpy()})[0]
    else:
        with torch.no_grad():
            exported = torch.jit.load(str(alone))(images).numpy()
    assert exported.shape == expected.shape == (3, 1, 75, 161)
    difference = float(np.abs(exported - expected).max())
    print(f"{fmt}: max abs difference to the checkpoint = {difference:.3g}")
    assert difference <= tolerance
