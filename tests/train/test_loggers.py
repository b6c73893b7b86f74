"""The loggers: metrics.csv survives a resume, and the Lightning internals that relies on.

``lovaszseg.loggers.csv`` is the one module that reaches into Lightning's CSV writer; the pins
below state what it relies on, so a Lightning upgrade that moves it fails here by name.
"""

from __future__ import annotations

import csv
import warnings

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from lovaszseg.loggers.csv import ResumableCSVLogger


def test_csv_logger_appends_after_resume(tmp_path):
    first = ResumableCSVLogger(str(tmp_path))
    first.log_metrics({"epoch": 0, "train/loss": 1.0}, step=0)
    first.save()
    second = ResumableCSVLogger(str(tmp_path))
    second.log_metrics({"epoch": 1, "val/mIoU": 0.5}, step=1)
    second.save()
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert rows[0]["train/loss"] == "1.0" and rows[1]["val/mIoU"] == "0.5"


def test_lightning_writer_deletes_metrics_csv_in_the_hook_the_resumable_logger_replaces(
    tmp_path, monkeypatch
):
    """Pinned: Lightning's writer checks an existing folder in ``_check_log_dir_exists``, called
    from its constructor, and deletes ``metrics.csv`` there (what a resume must not do)."""
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("epoch,train/loss\n0,1.0\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ExperimentWriter(log_dir=str(tmp_path))
    assert not metrics.exists()
    calls = []
    monkeypatch.setattr(ExperimentWriter, "_check_log_dir_exists", lambda self: calls.append(self))
    writer = ExperimentWriter(log_dir=str(tmp_path))
    assert calls == [writer]


def test_lightning_writer_keeps_its_header_in_metrics_keys_and_appends_to_the_file(
    tmp_path, monkeypatch
):
    """Pinned: the header a writer writes is ``metrics_keys``, and an existing file whose header
    already holds every key is appended to, not rewritten."""
    (tmp_path / "metrics.csv").write_text("epoch,step,train/loss\n0,0,1.0\n")
    monkeypatch.setattr(ExperimentWriter, "_check_log_dir_exists", lambda self: None)
    writer = ExperimentWriter(log_dir=str(tmp_path))
    writer.metrics_keys = ["epoch", "step", "train/loss"]
    writer.log_metrics({"epoch": 1, "train/loss": 0.5}, step=1)
    writer.save()
    assert (tmp_path / "metrics.csv").read_text().splitlines() == [
        "epoch,step,train/loss", "0,0,1.0", "1,1,0.5",
    ]  # fmt: skip


def test_lightning_csv_logger_builds_its_writer_once_through_experiment(tmp_path):
    """Pinned: ``CSVLogger`` keeps its writer in ``_experiment`` (built by the ``experiment``
    property the resumable logger overrides) and has a filesystem in ``_fs``."""
    logger = ResumableCSVLogger(str(tmp_path))
    assert isinstance(logger, CSVLogger) and logger._experiment is None and logger._fs is not None
    writer = logger.experiment
    assert logger._experiment is writer and logger.experiment is writer
    assert writer.metrics_file_path == str(tmp_path / "metrics.csv")
