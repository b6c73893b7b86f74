"""A CSVLogger that appends to the run's ``metrics.csv`` instead of deleting it on resume.

Lightning's CSVLogger removes an existing ``metrics.csv`` when its directory is not empty, so a
run resumed in place (``ckpt_path=last``) would lose every epoch before the crash. Here the old
header is adopted instead and new rows are appended; an epoch that was re-run after a crash can
appear twice, and the later row is the one that counts.
"""

from __future__ import annotations

import csv

from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
                self.metrics_keys = list(csv.DictReader(handle).fieldnames or [])


class ResumableCSVLogger(CSVLogger):
    """Writes ``metrics.csv`` straight into ``save_dir`` (no ``name/version_N`` subfolders)."""

    def __init__(self, save_dir: str, flush_logs_every_n_steps: int = 1) -> None:
        super().__init__(
            save_dir=save_dir,
            name="",
            version="",
            flush_logs_every_n_steps=flush_logs_every_n_steps,
        )

    @property
    @rank_zero_experiment
    def experiment(self) -> _AppendingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
