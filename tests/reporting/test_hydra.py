"""The report on the layout real Hydra multiruns write.

A stand-in training app (no model: it logs a deterministic curve per loss and seed) is run as
`python app.py -m ...`, so the sweep folders, ``.hydra/*.yaml`` and ``multirun.yaml`` are
exactly what Hydra produces, not what the tests assume it produces. Its ``metrics.csv`` is
written the way CSVLogger writes it (checked byte for byte in tests/reporting/test_runs.py); Lightning
itself is not imported, to keep the three sweeps to a few seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from lovaszseg.report import main

APP = """
import csv, json, os
import hydra

@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def train(cfg):
    out = hydra.core.hydra_config.HydraConfig.get().runtime.output_dir
    weight = cfg.loss.terms.get("lovasz_hinge", {}).get("weight", 0.0)
    peak = 0.70 + 0.1 * weight + 0.01 * cfg.seed
    if cfg.seed == 9:
        raise RuntimeError("simulated crash before the first validation")
    rows, step = [], 0
    for epoch in range(cfg.epochs):
        for _ in range(2):
            step += 1
            rows.append({"train/loss": 1.0 / step, "epoch": epoch, "step": step})
        miou = peak - 0.1 * abs(epoch - 1)
        rows.append({"val/mIoU": miou, "val/IoU_background": 0.98,
                     "val/IoU_road": 2 * miou - 0.98, "epoch": epoch, "step": step})
    with open(os.path.join(out, "metrics.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=sorted({k for row in rows for k in row}))
        writer.writeheader()
        writer.writerows(rows)
    results = {"task": "binary", "data": "synthetic_roads", "loss": cfg.loss_name,
               "model": "toy", "experiment": None, "seed": cfg.seed, "epochs": cfg.epochs,
               "status": "completed", "wall_time_s": 1.5}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f)

if __name__ == "__main__":
    train()
"""

CONF = {
    "train.yaml": """
        defaults:
          - loss: bce
          - _self_
        seed: 1
        epochs: 3
        data: {num_classes: 2, class_names: [background, road], difficulty: hard}
        loss_name: ${hydra:runtime.choices.loss}
    """,
    "loss/bce.yaml": "terms: {bce: {weight: 1.0}}",
    "loss/lovasz_hinge_bce.yaml": "terms: {lovasz_hinge: {weight: 0.5}, bce: {weight: 0.5}}",
}


def sweep(tmp_path, name, *overrides, check=True):
    """Run the stand-in app as a Hydra multirun into tmp_path/name."""
    sweep_dir = tmp_path / name
    done = subprocess.run(
        [sys.executable, "app.py", "-m", *overrides, f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert done.returncode == 0, done.stderr[-2000:]
    return sweep_dir


@pytest.fixture
def app(tmp_path):
    (tmp_path / "app.py").write_text(APP)
    for name, text in CONF.items():
        path = tmp_path / "conf" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def test_report_on_real_hydra_sweeps(app, capsys):
    first = sweep(app, "day1", "loss=bce,lovasz_hinge_bce", "seed=1,2")
    second = sweep(
        app, "day2", "loss=lovasz_hinge_bce", "loss.terms.lovasz_hinge.weight=1.0", "seed=1,2"
    )
    crashed = sweep(app, "day3", "loss=bce", "seed=9", check=False)
    assert (first / "multirun.yaml").is_file() and (first / "3" / ".hydra" / "hydra.yaml").is_file()
    assert not (crashed / "0" / "results.json").exists()

    out = app / "report"
    assert main([str(first), str(second), str(crashed), "--out", str(out)]) == 0
    data = json.loads((out / "report.json").read_text())
    groups = {g["label"]: g for g in data["panels"][0]["groups"]}
    # peak = 0.70 + 0.1·weight + 0.01·seed, seeds 1 and 2: means 0.715 / 0.765 / 0.815
    heavy = "lovasz_hinge_bce (loss.terms.lovasz_hinge.weight=1.0)"
    paddle = "lovasz_hinge_bce (loss.terms.lovasz_hinge.weight=0.5)"
    assert list(groups) == [heavy, paddle, "bce"]
    assert groups["bce"]["best"]["mean"] == pytest.approx(0.715)
    assert groups["bce"]["best"]["std"] == pytest.approx(0.01 / 2**0.5)
    assert groups[paddle]["delta_vs_baseline"] == pytest.approx(0.05)
    assert groups[heavy]["delta_vs_baseline"] == pytest.approx(0.10)
    assert groups[heavy]["per_class_iou"]["road"]["mean"] == pytest.approx(2 * 0.815 - 0.98)
    assert groups["bce"]["best_epoch"]["values"] == [1, 1]
    assert groups["bce"]["n_incomplete_left_out"] == 1
    assert data["incomplete_runs"] == [str(crashed / "0")]
    assert data["panels"][0]["notes"] == []
