"""Is the loader the bottleneck? Training-pipeline images/s at PaddleSeg's road settings.

Decodes DeepGlobe-sized (1024x1024) synthetic road images through the train preset (rescale
0.5-2.0 step 0.25, pad, 768 crop, flip, normalise) with 0, 1 and 2 DataLoader workers, and times
DeepLabV3+ / MobileNetV2 training steps at the same batch size, on CPU. Prints a table and writes
benchmarks/results/bench_data.json.

    python benchmarks/bench_data.py [--batch-size 4] [--batches 6] [--steps 3] [--workers 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from rich.console import Console
from rich.table import Table

from lovaszseg.data import DeepGlobeRoadDataModule, EvalPreset, TrainPreset
from lovaszseg.data.synthetic import SyntheticRoads

RESULTS = Path(__file__).resolve().parent / "results" / "bench_data.json"


def road_datamodule(
    root: Path, images: int, batch_size: int, workers: int
) -> DeepGlobeRoadDataModule:
    dm = DeepGlobeRoadDataModule(
        root,
        batch_size=batch_size,
        num_workers=workers,
        crop_size=768,
        train_transform=TrainPreset(crop_size=768, scale_min=0.5, scale_max=2.0, scale_step=0.25),
        eval_transform=EvalPreset(),
        synthetic=SyntheticRoads(num_train=images, num_val=1, image_size=1024),
    )
    dm.setup()
    return dm


def loader_images_per_s(dm: DeepGlobeRoadDataModule, batches: int) -> float:
    """Images/s over `batches` batches, after the first (worker start-up) is discarded."""
    iterator = iter(dm.train_dataloader())
    next(iterator)
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        seen += len(next(iterator)["name"])
    return seen / (time.perf_counter() - start)


def model_images_per_s(batch: dict, steps: int) -> float:
    """Images/s of forward + backward + SGD step of DeepLabV3+ / MobileNetV2, one logit."""
    model = smp.DeepLabV3Plus("mobilenet_v2", encoder_weights=None, classes=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    valid = batch["mask"] != 255

    def step() -> None:
        logits = model(batch["image"])[:, 0]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits[valid], batch["mask"][valid].float()
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch["image"].shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--batches", type=int, default=6, help="timed batches per worker count")
    parser.add_argument("--steps", type=int, default=3, help="timed model steps")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    console = Console()
    images = args.batch_size * (args.batches + 1)  # one untimed batch, then the timed ones

    with tempfile.TemporaryDirectory(prefix="bench_data-") as tmp:
        loader = {}
        for workers in args.workers:
            dm = road_datamodule(Path(tmp) / "roads", images, args.batch_size, workers)
            loader[workers] = loader_images_per_s(dm, args.batches)
            console.print(f"loader, {workers} worker(s): {loader[workers]:.2f} images/s")
        batch = next(
            iter(
                road_datamodule(Path(tmp) / "roads", images, args.batch_size, 0).train_dataloader()
            )
        )
    model = model_images_per_s(batch, args.steps)
    console.print(f"model train step: {model:.2f} images/s")

    table = Table(title=f"data pipeline vs model, 768 crop, batch {args.batch_size}, CPU")
    table.add_column("what")
    table.add_column("images/s", justify="right")
    table.add_column("vs model", justify="right")
    for workers, rate in loader.items():
        table.add_row(f"loader, {workers} worker(s)", f"{rate:.2f}", f"{rate / model:.1f}x")
    table.add_row("DeepLabV3+ MobileNetV2 train step", f"{model:.2f}", "1.0x")
    console.print(table)

    result = {
        "settings": {
            "crop_size": 768,
            "image_size": 1024,
            "scales": TrainPreset(768).scales,
            "batch_size": args.batch_size,
            "timed_batches": args.batches,
            "timed_steps": args.steps,
        },
        "loader_images_per_s": {str(w): round(r, 3) for w, r in loader.items()},
        "model_train_images_per_s": round(model, 3),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average": os.getloadavg(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp_file = args.output.with_suffix(".json.tmp")
    tmp_file.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp_file, args.output)
    console.print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
