"""``python -m lovaszseg.train`` / ``lovaszseg.eval`` end to end on tiny synthetic data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from lovaszseg.inference.overlay import TITLE_BAND
from tests.train.entry import (
    epochs_with,
    metric_rows,
    results,
    run_dirs,
    signal_after_epoch,
    start_training,
    sweep_jobs,
)


def test_default_job_writes_the_run_directory_contract_and_wandb_offline(run_entry, tmp_path):
    proc = run_entry("lovaszseg.train", "logger=wandb", env={"WANDB_MODE": "offline"})
    (run,) = run_dirs(tmp_path)
    for name in (
        ".hydra/config.yaml",
        "metrics.csv",
        "checkpoints/last.ckpt",
        "checkpoints/best.ckpt",
    ):
        assert (run / name).is_file(), name
    summary = results(run)
    assert {k: summary[k] for k in ("task", "data", "loss", "model", "experiment", "seed")} == {
        "task": "binary",
        "data": "synthetic_roads",
        "loss": "lovasz_hinge_bce",
        "model": "deeplabv3plus_mobilenetv2",
        "experiment": None,
        "seed": 1,
    }
    assert (summary["status"], summary["epochs"], summary["final"]["epoch"]) == ("completed", 2, 1)
    final = summary["final"]
    assert set(final["per_class_iou"]) == {"background", "road"}
    assert final["val/mIoU"] == pytest.approx(sum(final["per_class_iou"].values()) / 2)
    assert summary["best"]["val/mIoU"] >= final["val/mIoU"]
    assert summary["wall_time_s"] > 0
    rows = metric_rows(run)
    for column in ("train/loss", "train/loss_lovasz_hinge", "train/loss_bce", "val/mIoU"):
        assert epochs_with(rows, column) == [0, 1], column
    assert "val/IoU_road" in rows[0]
    assert "mIoU" in proc.stdout and "road" in proc.stdout  # the final IoU table
    # one plain line per validated epoch, in train.log and on the console (SLURM .out, pipes)
    log = (run / "train.log").read_text()
    for epoch in (0, 1):
        (line,) = [
            x for x in log.splitlines() if f"epoch {epoch + 1}/2 step {2 * epoch + 2} |" in x
        ]
        for part in ("train/loss", "lovasz_hinge", "bce", "val/loss", "val/mIoU", " s"):
            assert part in line, (part, line)
    assert f"val/mIoU {final['val/mIoU']:.4f}" in log

    (offline,) = (run / "wandb").glob("offline-run-*")
    assert list(offline.glob("run-*.wandb"))
    media = offline / "files" / "media"
    assert len(list((media / "images" / "val").glob("examples_*.png"))) == 2  # 1 val batch of 2
    assert list((media / "table" / "val").glob("per_class_iou_*.table.json"))

    # the two-run finetune recipe: new run, new optimizer, weights from the finished one
    weights = run / "checkpoints" / "last.ckpt"
    run_entry("lovaszseg.train", "loss=lovasz_hinge", f"init_from={weights}")
    finetuned = next(r for r in run_dirs(tmp_path) if r != run)
    summary = results(finetuned)
    assert summary["init_from"] == str(weights) and summary["loss"] == "lovasz_hinge"
    assert summary["init_from_loss"] == "lovasz_hinge_bce"  # the report's label survives copies
    assert (summary["status"], summary["final"]["epoch"]) == ("completed", 1)
    assert epochs_with(metric_rows(finetuned), "train/loss_lovasz_hinge") == [0, 1]


def test_roads_plateau_logs_thin_and_wide_road_iou_from_the_width_maps(run_entry, tmp_path):
    run_entry("lovaszseg.train", "experiment=roads_plateau", "data.synthetic.image_size=128")
    (run,) = run_dirs(tmp_path)
    rows = metric_rows(run)
    for zone in ("thin", "wide"):
        assert epochs_with(rows, f"val/IoU_road_{zone}") == [0, 1], zone
    last = next(r for r in reversed(rows) if r.get("val/IoU_road_thin"))
    assert 0.0 <= float(last["val/IoU_road_thin"]) <= 1.0


def test_multiclass_training_then_whole_image_eval_agree(run_entry, tmp_path):
    run_entry("lovaszseg.train", "loss=lovasz_softmax", "data=synthetic_voc", "seed=3")
    (run,) = run_dirs(tmp_path)
    trained = results(run)
    assert (trained["task"], trained["loss"], trained["seed"]) == (
        "multiclass",
        "lovasz_softmax",
        3,
    )
    assert len(trained["final"]["per_class_iou"]) == 21
    best = run / "checkpoints" / "best.ckpt"
    proc = run_entry(
        "lovaszseg.eval", f"ckpt_path={best}", "data=synthetic_voc", "save_predictions=true"
    )
    (evaluated,) = run_dirs(tmp_path, task="eval")
    assert f"overlays: {evaluated / 'overlays'}" in proc.stdout  # where to look, said
    scores = results(evaluated)["final"]
    assert scores["epoch"] == trained["best"]["epoch"]
    assert scores["val/mIoU"] == pytest.approx(trained["best"]["val/mIoU"], abs=1e-6)
    assert len(list((evaluated / "predictions").glob("*.png"))) == 2  # debug: 1 batch of 2
    overlays = sorted((evaluated / "overlays").glob("*.png"))
    assert len(overlays) == 2
    label = Image.open(evaluated / "predictions" / overlays[0].name)
    panel = Image.open(overlays[0])  # image | truth | prediction, 4 px apart, titled above
    assert (panel.mode, panel.size) == ("RGB", (3 * label.width + 8, TITLE_BAND + label.height))
    band = np.asarray(panel)[:TITLE_BAND]
    assert (band.min(axis=2) < 128).any(), "the title band above the panels holds no title"


def test_binary_loss_on_multiclass_data_is_refused_in_one_line_before_training(run_entry, tmp_path):
    proc = run_entry("lovaszseg.train", "loss=lovasz_hinge", "data=synthetic_voc", check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    assert (
        "error: the loss is binary (one logit channel) but the data has 21 classes"
    ) in proc.stderr
    assert "use a multi-class loss for this data: loss=ce" in proc.stderr
    (run,) = run_dirs(tmp_path)
    assert not (run / "checkpoints").exists()
    assert results(run)["status"] == "failed"  # so reports count it as failed
    assert "refused: the loss is binary" in (run / "train.log").read_text()


@pytest.mark.slow
def test_missing_dataset_is_reported_first_with_its_download_command(tmp_path):
    nowhere = tmp_path / "nowhere"
    train = [sys.executable, "-m", "lovaszseg.train", "debug=fast", "data=voc2012", "loss=ce"]
    proc = subprocess.run(  # not run_entry: its fast overrides set synthetic data's sizes
        [*train, f"paths.data_dir={nowhere}"],
        cwd=tmp_path,
        env=os.environ | {"NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    assert f"Pascal VOC 2012 root {nowhere / 'voc2012'} does not exist" in proc.stderr
    download = f"python -m lovaszseg.data.download voc2012 --root {nowhere / 'voc2012'}"
    assert download in proc.stderr
    assert "GPU available" not in proc.stdout + proc.stderr  # no Trainer was built


def test_wrong_types_fail_at_once_naming_key_and_type(run_entry, tmp_path):
    proc = run_entry(
        "lovaszseg.train",
        "data.batch_size=abc",
        "trainer.max_epochs=abc",
        "loss.terms.lovasz_hinge.weight=abc",
        check=False,
    )
    assert proc.returncode != 0
    for problem in (
        "data.batch_size='abc': expected an integer",
        "trainer.max_epochs='abc': expected an integer",
        "loss.terms.lovasz_hinge.weight='abc': expected a number",
    ):
        assert problem in proc.stderr
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr
    assert "Trainer" not in proc.stderr  # nothing was built


def test_usage_mode_experiment_without_multirun_is_refused_with_a_hint(run_entry, tmp_path):
    proc = run_entry("lovaszseg.train", "experiment=roads_modes", check=False)
    assert proc.returncode != 0
    assert (
        "experiment=roads_modes is a sweep (loss=bce,lovasz_hinge,lovasz_hinge_bce,"
        "finetune_hinge): add -m to run it all, or choose one, e.g. loss=bce"
    ) in proc.stderr
    assert not (run_dirs(tmp_path)[0] / "checkpoints").exists()


@pytest.mark.slow
def test_usage_mode_sweep_runs_each_mode_in_its_own_directory_and_wandb_run(run_entry, tmp_path):
    run_entry(
        "lovaszseg.train",
        "experiment=roads_modes",
        "logger=wandb",
        multirun=True,
        env={"WANDB_MODE": "offline"},
        timeout=600,  # four runs one after another: 240 s was not enough on 2 shared cores
    )
    jobs = sweep_jobs(tmp_path)
    summaries = [results(job) for job in jobs]
    assert [s["loss"] for s in summaries] == [
        "bce",
        "lovasz_hinge",
        "lovasz_hinge_bce",
        "finetune_hinge",
    ]
    assert {s["experiment"] for s in summaries} == {"roads_modes"}
    assert all(s["status"] == "completed" and s["data"] == "synthetic_roads" for s in summaries)
    assert not (tmp_path / "outputs").exists()
    wandb_runs = [list((job / "wandb").glob("offline-run-*")) for job in jobs]
    assert all(len(runs) == 1 for runs in wandb_runs)  # one W&B run per job, none shared
    assert len({runs[0].name.rsplit("-", 1)[1] for runs in wandb_runs}) == 4
    finetune = metric_rows(jobs[3])
    assert epochs_with(finetune, "train/loss_bce") == [0]
    assert epochs_with(finetune, "train/loss_lovasz_hinge") == [1]


def test_run_killed_with_sigkill_resumes_and_keeps_the_finetune_schedule(
    data_dir, run_entry, tmp_path
):
    overrides = ["loss=finetune_hinge", "trainer.max_epochs=4"]  # switches at epoch 2
    proc = start_training(data_dir, tmp_path, *overrides)
    assert signal_after_epoch(proc, tmp_path, 0, signal.SIGKILL) == -signal.SIGKILL
    (run,) = run_dirs(tmp_path)
    assert results(run)["status"] == "running"

    run_entry("lovaszseg.train", *overrides, f"hydra.run.dir={run}", "ckpt_path=last")
    summary = results(run)
    assert (summary["status"], summary["epochs"], summary["final"]["epoch"]) == ("completed", 4, 3)
    rows = metric_rows(run)
    assert epochs_with(rows, "val/mIoU") == [0, 1, 2, 3]
    assert epochs_with(rows, "train/loss_bce") == [0, 1]
    assert epochs_with(rows, "train/loss_lovasz_hinge") == [2, 3]
