"""The loggers: metrics.csv survives a resume (its per-epoch table: test_metrics_csv.py)."""

from __future__ import annotations

import csv

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
