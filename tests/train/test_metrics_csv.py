"""metrics.csv: one row per epoch, whatever order Lightning logs in, across resumes and kills."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from lovaszseg.loggers.csv import ResumableCSVLogger
from lovaszseg.loggers.epoch_rows import EpochRows, read_epoch_rows
from tests.train.entry import metric_rows, run_dirs

# How Lightning logs one epoch here: the learning rate as the epoch starts (LearningRateMonitor
# gives only the step), then the validation metrics, then the training losses.
LIGHTNING_EPOCH_0 = [
    ({"lr-AdamW": 0.002}, 0),
    ({"val/mIoU": 0.5, "val/loss": 0.9, "epoch": 0}, 3),
    ({"train/loss": 1.25, "epoch": 0}, 3),
]
LIGHTNING_EPOCH_1 = [
    ({"lr-AdamW": 0.001}, 4),
    ({"val/mIoU": 0.75, "val/loss": 0.5, "epoch": 1}, 7),
    ({"train/loss": 0.625, "epoch": 1}, 7),
]
MERGED = [
    "epoch,step,lr-AdamW,train/loss,val/loss,val/mIoU",
    "0,3,0.002,1.25,0.9,0.5",
    "1,7,0.001,0.625,0.5,0.75",
]


def log_all(logger: ResumableCSVLogger, calls) -> None:
    for metrics, step in calls:
        logger.log_metrics(metrics, step)
        logger.save()


def test_an_epoch_logged_in_three_calls_is_one_row_with_the_starting_lr():
    rows = EpochRows()
    for metrics, step in LIGHTNING_EPOCH_0 + LIGHTNING_EPOCH_1:
        rows.add(metrics, step)
    assert rows.to_csv().splitlines() == MERGED


def test_lightning_sparse_file_reads_back_as_the_same_table(tmp_path):
    sparse = tmp_path / "metrics.csv"
    sparse.write_text(
        "epoch,lr-AdamW,step,train/loss,val/loss,val/mIoU\n"
        ",0.002,0,,,\n0,,3,,0.9,0.5\n0,,3,1.25,,\n"
        ",0.001,4,,,\n1,,7,,0.5,0.75\n1,,7,0.625,,\n"
    )
    assert read_epoch_rows(sparse).to_csv().splitlines() == MERGED


def test_the_logger_rewrites_one_row_per_epoch_and_the_rows_carry_every_digit(tmp_path):
    logger = ResumableCSVLogger(tmp_path)
    log_all(logger, LIGHTNING_EPOCH_0)
    assert (tmp_path / "metrics.csv").read_text().splitlines() == MERGED[:2]
    log_all(logger, [({"val/mIoU": 0.1 + 0.2, "epoch": 2}, 11)])
    rows = metric_rows(tmp_path)
    assert [r["epoch"] for r in rows] == ["0", "2"]
    assert float(rows[1]["val/mIoU"]) == 0.1 + 0.2  # 0.30000000000000004 exactly


def test_a_resumed_run_keeps_the_earlier_rows_and_a_rerun_epoch_replaces_its_own(tmp_path):
    log_all(ResumableCSVLogger(tmp_path), LIGHTNING_EPOCH_0 + LIGHTNING_EPOCH_1[:2])
    # killed during epoch 1's training-epoch end; the resumed run logs epoch 1 again
    rerun = [({"lr-AdamW": 0.001}, 4), ({"val/mIoU": 0.8, "epoch": 1}, 7)]
    log_all(ResumableCSVLogger(tmp_path), [*rerun, ({"train/loss": 0.5, "epoch": 1}, 7)])
    assert (tmp_path / "metrics.csv").read_text().splitlines() == [
        MERGED[0],
        MERGED[1],
        "1,7,0.001,0.5,0.5,0.8",  # val/loss of the first try stays: the rerun did not log it
    ]


def test_a_write_that_dies_midway_leaves_the_previous_table(tmp_path, monkeypatch):
    logger = ResumableCSVLogger(tmp_path)
    log_all(logger, LIGHTNING_EPOCH_0)
    before = (tmp_path / "metrics.csv").read_text()

    def torn_write(self: Path, text: str, **kwargs) -> int:
        with self.open("w") as handle:
            handle.write(text[: len(text) // 2])
        raise OSError("killed mid-write")

    monkeypatch.setattr(Path, "write_text", torn_write)
    with pytest.raises(OSError, match="killed mid-write"):
        log_all(logger, LIGHTNING_EPOCH_1)
    assert (tmp_path / "metrics.csv").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]


def test_a_torn_last_row_of_an_old_file_reads_as_missing_values(tmp_path):
    old = tmp_path / "metrics.csv"
    old.write_text("epoch,step,train/loss,val/mIoU\n0,3,1.25,0.5\n1,7,0.6")
    assert read_epoch_rows(old).to_csv().splitlines() == [
        "epoch,step,train/loss,val/mIoU",
        "0,3,1.25,0.5",
        "1,7,0.6,",
    ]


def test_a_file_whose_epoch_is_not_a_whole_number_is_refused_by_file_and_line(tmp_path):
    bad = tmp_path / "metrics.csv"
    bad.write_text("epoch,step,val/mIoU\n0,3,0.5\nlast,7,0.6\n")
    with pytest.raises(
        ValueError, match=r"metrics\.csv, line 3: epoch 'last': expected a whole number"
    ):
        read_epoch_rows(bad)


def test_hyperparameters_go_to_hparams_yaml(tmp_path):
    ResumableCSVLogger(tmp_path).log_hyperparams({"loss": {"name": "ce"}, "seed": 3})
    assert (tmp_path / "hparams.yaml").read_text() == "loss:\n  name: ce\nseed: 3\n"


@pytest.mark.slow
def test_training_and_its_resume_write_one_row_per_epoch(run_entry, tmp_path):
    run_entry("lovaszseg.train", "trainer.max_epochs=2")
    (run,) = run_dirs(tmp_path)
    first = (run / "metrics.csv").read_text().splitlines()
    run_entry("lovaszseg.train", "trainer.max_epochs=3", f"hydra.run.dir={run}", "ckpt_path=last")
    lines = (run / "metrics.csv").read_text().splitlines()
    assert lines[:3] == first  # the resume rewrote the earlier epochs unchanged
    rows = list(csv.DictReader(lines))
    assert [(r["epoch"], r["step"]) for r in rows] == [("0", "1"), ("1", "3"), ("2", "5")]
    for row in rows:  # training, validation and the learning rate in every epoch's row
        assert all(row[name] for name in ("lr-AdamW", "train/loss", "val/loss", "val/mIoU"))
    assert float(rows[0]["lr-AdamW"]) == 0.002  # the epoch's own, logged as it started
    log = (run / "train.log").read_text()
    assert "epoch 1/2 step 2" in log and "epoch 2/2 step 4" in log and "epoch 3/3 step 6" in log
