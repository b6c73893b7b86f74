"""Fake training runs and Hydra sweeps on disk, in the exact layout lovaszseg.train writes.

Used by the report tests: each run gets a Lightning-style sparse ``metrics.csv`` (two training
rows and one validation row per epoch, columns sorted as CSVLogger sorts them), ``.hydra/``
with ``config.yaml``, ``hydra.yaml`` (``runtime.choices``) and ``overrides.yaml``, and — when
it finished — ``results.json``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

ROAD_CLASSES = ("background", "road")
BACKGROUND_IOU = 0.97

BCE = (0.70, 0.72, 0.74)
"""Best mIoU of the bce seeds in ``roads_sweeps``: mean 0.72, sample std 0.02."""
COMBINED = (0.75, 0.76, 0.77)
"""Best mIoU of the lovasz_hinge_bce seeds: mean 0.76, sample std 0.01."""

LOSS_TERMS = {
    "bce": {"bce": 1.0},
    "ce": {"ce": 1.0},
    "lovasz_hinge": {"lovasz_hinge": 1.0},
    "lovasz_hinge_bce": {"lovasz_hinge": 0.5, "bce": 0.5},
    "lovasz_softmax": {"lovasz_softmax": 1.0},
    "lovasz_softmax_ce": {"lovasz_softmax": 0.2, "ce": 0.8},
}


def road_curve(best: float, epochs: int = 3) -> list[float]:
    """A val/mIoU curve that peaks at ``best`` in epoch 1, then dips by 0.01."""
    values = [best - 0.2, best, best - 0.01, best - 0.015, best - 0.02]
    return values[:epochs]


def write_run(
    run_dir: Path,
    *,
    loss: str,
    seed: int,
    miou: list[float],
    complete: bool = True,
    status: str = "completed",
    classes: tuple[str, ...] = ROAD_CLASSES,
    data: str = "synthetic_roads",
    difficulty: str = "hard",
    weights: dict[str, float] | None = None,
    wall_time_s: float = 60.0,
    max_epochs: int | None = None,
    job_num: int = 0,
    first_epoch: int = 0,
    extra_iou: dict[str, list[float]] | None = None,
    extra_config: dict | None = None,
    extra_results: dict | None = None,
) -> Path:
    """Write one run; per-class IoU is derived so that its mean is exactly ``miou``.

    ``max_epochs`` defaults to the epochs logged; a crashed run logged fewer than it planned.
    A run resumed from a checkpoint logs from its ``first_epoch`` on; ``extra_iou`` are IoUs
    logged besides the classes' (``road_thin``), one value per epoch; ``extra_config`` and
    ``extra_results`` are added to config.yaml and results.json (``arm``, ``init_from``).
    ``complete=False`` leaves out results.json (a killed run); ``status`` is what it records
    otherwise (the trainer writes ``running`` after each validation, ``failed`` on an error).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    per_class = [_per_class(m, classes) for m in miou]
    logged = [
        iou | {name: values[i] for name, values in (extra_iou or {}).items()}
        for i, iou in enumerate(per_class)
    ]
    write_metrics_csv(run_dir / "metrics.csv", metric_rows(miou, logged, first_epoch))
    terms = {name: {"weight": w} for name, w in (weights or LOSS_TERMS[loss]).items()}
    task = "binary" if len(classes) == 2 else "multiclass"
    config = {
        "seed": seed,
        "paths": {"root_dir": "${hydra:runtime.cwd}", "output_dir": "${hydra:runtime.output_dir}"},
        "data": {
            "_target_": "lovaszseg.data.DeepGlobeRoadDataModule",
            "root": "${paths.data_dir}/" + data,
            "num_classes": len(classes),
            "ignore_index": 255,
            "class_names": list(classes),
            "batch_size": 4,
            "crop_size": 256,
            "difficulty": difficulty,
        },
        "model": {"encoder_name": "mobilenet_v2", "encoder_weights": None},
        "loss": {"_target_": "lovaszseg.losses.WeightedLoss", "terms": terms},
        "trainer": {"max_epochs": max_epochs or first_epoch + len(miou)},
        **(extra_config or {}),
    }
    choices = {
        "loss": loss,
        "data": data,
        "model": "deeplabv3plus_mobilenetv2",
        "experiment": "roads_modes",
        "trainer": "cpu",
        "paths": "default",
        "hydra/launcher": "basic",
        "hydra/sweeper": "basic",
        # nested defaults show up as group@package, e.g. loss_term@loss.terms.bce: bce
        **{f"loss_term@loss.terms.{name}": name for name in terms},
    }
    overrides = [f"loss={loss}", f"seed={seed}", "experiment=roads_modes"]
    overrides += [f"loss.terms.{name}.weight={w}" for name, w in (weights or {}).items()]
    hydra = {
        "hydra": {
            "mode": "MULTIRUN",
            "job": {"name": "train", "num": job_num},
            "overrides": {"hydra": ["hydra.mode=MULTIRUN"], "task": overrides},
            "runtime": {"version": "1.3.2", "choices": choices, "output_dir": str(run_dir)},
        }
    }
    _write_yaml(run_dir / ".hydra" / "config.yaml", config)
    _write_yaml(run_dir / ".hydra" / "hydra.yaml", hydra)
    _write_yaml(run_dir / ".hydra" / "overrides.yaml", overrides)
    if complete:
        best = max(range(len(miou)), key=lambda e: (miou[e], -e))
        results = {
            "task": task,
            "data": data,
            "loss": loss,
            "model": "deeplabv3plus_mobilenetv2",
            "experiment": "roads_modes",
            "seed": seed,
            "epochs": first_epoch + len(miou),
            "status": status,
            "best": {
                "val/mIoU": miou[best],
                "epoch": first_epoch + best,
                "per_class_iou": per_class[best],
            },
            "final": {
                "val/mIoU": miou[-1],
                "epoch": first_epoch + len(miou) - 1,
                "per_class_iou": per_class[-1],
            },
            "wall_time_s": wall_time_s,
            **(extra_results or {}),
        }
        (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    return run_dir


def write_sweep(sweep_dir: Path, runs: list[dict]) -> Path:
    """A Hydra multirun dir: ``multirun.yaml`` and job dirs 0/, 1/, ... (one per ``runs`` item)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    _write_yaml(sweep_dir / "multirun.yaml", {"hydra": {"mode": "MULTIRUN"}})
    for num, spec in enumerate(runs):
        write_run(sweep_dir / str(num), job_num=num, **spec)
    return sweep_dir


def roads_sweeps(root):
    """Two sweeps, as a user runs them on different days, plus one crashed run."""
    first = write_sweep(
        root / "day1",
        [
            {"loss": "bce", "seed": s, "miou": road_curve(b)}
            for s, b in zip((1, 2, 3), BCE, strict=True)
        ]
        + [{"loss": "lovasz_hinge", "seed": 1, "miou": road_curve(0.66)}],
    )
    second = write_sweep(
        root / "day2",
        [
            {"loss": "lovasz_hinge_bce", "seed": s, "miou": road_curve(b)}
            for s, b in zip((1, 2, 3), COMBINED, strict=True)
        ]
        + [
            {
                "loss": "lovasz_hinge_bce",
                "seed": 4,
                "miou": [0.9],  # better than any finished run
                "complete": False,
                "max_epochs": 3,
            }
        ],
    )
    return [first, second]


def _per_class(miou: float, classes: tuple[str, ...]) -> dict[str, float]:
    """Background fixed, the rest equal, so that the class mean is ``miou``."""
    rest = (miou * len(classes) - BACKGROUND_IOU) / (len(classes) - 1)
    return {name: BACKGROUND_IOU if i == 0 else rest for i, name in enumerate(classes)}


def metric_rows(
    miou: list[float], per_class: list[dict[str, float]], first_epoch: int = 0
) -> list[dict]:
    """What a Lightning run logs: two training rows and one validation row per epoch."""
    rows: list[dict] = []
    step = 0
    for epoch, (m, classes) in enumerate(zip(miou, per_class, strict=True), start=first_epoch):
        for _ in range(2):
            step += 5
            rows.append({"epoch": epoch, "step": step, "train/loss": 1.0 / step})
        val = {"epoch": epoch, "step": step, "val/mIoU": m}
        val.update({f"val/IoU_{name}": v for name, v in classes.items()})
        rows.append(val)
    return rows


def write_metrics_csv(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` as CSVLogger does: sorted header, empty cells for metrics not logged."""
    header = sorted({key for row in rows for key in row})
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def _write_yaml(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
