"""Finding and loading runs: Lightning's sparse CSV, Hydra sweep layouts, crashed runs."""

from __future__ import annotations

import pytest

from lovaszseg.reporting.runs import find_run_dirs, load_run, load_runs, read_curves
from tests.reporting.fakes import metric_rows, road_curve, write_metrics_csv, write_run, write_sweep


def test_read_curves_takes_sparse_rows_and_last_value_per_epoch(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(
        "epoch,step,train/loss,val/IoU_road,val/mIoU\n"
        "0,4,0.9,,\n"
        "0,4,,0.30,0.60\n"
        "1,9,0.7,,\n"
        "1,9,,0.35,0.65\n"
        "1,9,,0.40,0.68\n"  # the epoch re-logged after a resume wins
        "2,14,nan,,\n"  # a NaN is a missing value
        "2,14,,0.41\n"  # a short last row, as a kill mid-write leaves it
    )
    curves = read_curves(path)
    assert curves["val/mIoU"] == {0: 0.60, 1: 0.68}
    assert curves["val/IoU_road"] == {0: 0.30, 1: 0.40, 2: 0.41}
    assert curves["train/loss"] == {0: 0.9, 1: 0.7}


def test_fake_metrics_csv_is_byte_identical_to_lightning_csvlogger(tmp_path):
    """The report tests' fake runs write exactly what Lightning's CSVLogger writes."""
    from pytorch_lightning.loggers import CSVLogger

    rows = metric_rows([0.5, 0.7], [{"background": 0.97, "road": 0.03}, {"road": 0.43}])
    logger = CSVLogger(tmp_path / "lightning", name="", version="")
    for row in rows:
        logger.log_metrics({k: v for k, v in row.items() if k != "step"}, step=row["step"])
    logger.save()
    write_metrics_csv(tmp_path / "fake.csv", rows)
    real = (tmp_path / "lightning" / "metrics.csv").read_bytes()
    assert real == (tmp_path / "fake.csv").read_bytes()
    assert read_curves(tmp_path / "fake.csv")["val/IoU_road"] == {0: 0.03, 1: 0.43}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"val/mIoU,loss\n0.5,1\n", "expected an 'epoch' column"),
        (b"epoch,step,val/mIoU\n0,1,high\n", "line 2, column 'val/mIoU'"),
        (b"\xff\xfe\x00garbage\x00", "cannot read metrics.csv"),
    ],
)
def test_read_curves_rejects_malformed_files_naming_them(tmp_path, content, expected):
    path = tmp_path / "metrics.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=expected) as err:
        read_curves(path)
    assert str(path) in str(err.value)


def test_find_run_dirs_walks_sweeps_in_job_order(tmp_path):
    specs = [{"loss": "bce", "seed": s, "miou": road_curve(0.7)} for s in range(12)]
    sweep = write_sweep(tmp_path / "multirun" / "2026-11-23" / "11-00-00", specs)
    (sweep / "0" / "checkpoints").mkdir()
    assert [p.name for p in find_run_dirs(tmp_path)] == [str(i) for i in range(12)]
    assert find_run_dirs(sweep / "3") == [sweep / "3"]


@pytest.mark.parametrize("make", [lambda p: p.mkdir(), lambda p: None])
def test_find_run_dirs_refuses_a_dir_without_runs(tmp_path, make):
    empty = tmp_path / "nothing"
    make(empty)
    with pytest.raises(ValueError, match="nothing") as err:
        find_run_dirs(empty)
    assert str(empty) in str(err.value)


def test_load_run_reads_a_completed_run(tmp_path):
    run = load_run(write_run(tmp_path / "r", loss="lovasz_hinge_bce", seed=2, miou=[0.6, 0.7]))
    assert run.complete and run.status == "completed"
    assert (run.loss, run.seed, run.task, run.data) == (
        "lovasz_hinge_bce",
        2,
        "binary",
        "synthetic_roads",
    )
    assert run.class_names == ("background", "road")
    assert run.curves["val/mIoU"] == {0: 0.6, 1: 0.7}
    assert run.curves["val/IoU_road"][1] == pytest.approx(0.43)


def test_load_run_falls_back_to_hydra_files_for_a_crashed_run(tmp_path):
    run_dir = write_run(
        tmp_path / "r",
        loss="lovasz_hinge",
        seed=7,
        miou=[0.5],
        complete=False,
        classes=("sky", "car", "bike"),
    )
    run = load_run(run_dir)
    assert not run.complete and run.status == "incomplete"
    assert (run.loss, run.seed, run.task) == ("lovasz_hinge", 7, "multiclass")
    # the data config's class order, not CSVLogger's alphabetical column order
    assert run.class_names == ("sky", "car", "bike")


@pytest.mark.parametrize(
    ("status", "shown"),
    [("running", "running"), ("failed", "failed"), ("interrupted", "incomplete")],
)
def test_a_run_is_complete_only_when_completed_and_a_cut_short_one_is_incomplete(
    tmp_path, status, shown
):
    run = load_run(write_run(tmp_path / "r", loss="bce", seed=1, miou=[0.5], status=status))
    assert (run.status, run.complete) == (shown, False)


def test_load_run_survives_a_run_that_died_before_logging(tmp_path):
    run_dir = write_run(tmp_path / "r", loss="bce", seed=1, miou=[0.5], complete=False)
    (run_dir / "metrics.csv").unlink()
    run = load_run(run_dir)
    assert (run.loss, run.seed, run.status, run.curves) == ("bce", 1, "incomplete", {})


def test_load_run_names_a_broken_results_json(tmp_path):
    run_dir = write_run(tmp_path / "r", loss="bce", seed=1, miou=[0.5])
    (run_dir / "results.json").write_text('{"loss": "bce", ')
    with pytest.raises(ValueError, match=r"results\.json"):
        load_run(run_dir)


def test_load_runs_counts_a_run_given_twice_once(tmp_path):
    sweep = write_sweep(
        tmp_path / "s", [{"loss": "bce", "seed": s, "miou": road_curve(0.7)} for s in (1, 2)]
    )
    runs = load_runs([sweep, sweep / "1"])
    assert sorted(r.seed for r in runs) == [1, 2]


def test_a_run_that_died_in_its_first_epoch_has_no_curves_yet(tmp_path):
    """CSVLogger adds the epoch column with the first epoch row: before that, only steps."""
    path = tmp_path / "metrics.csv"
    path.write_text("lr-AdamW,step\n0.001,0\n0.001,1\n")
    assert read_curves(path) == {}
