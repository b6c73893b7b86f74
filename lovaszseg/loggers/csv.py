"""The run's ``metrics.csv``: one row per epoch (training, validation and learning rate merged).

Lightning's CSVLogger writes a sparse row per logging call (three an epoch here) and deletes the
file when a run resumes in its folder. This logger keeps the table of ``epoch_rows`` instead:
the rows already in the file are read back when a run resumes, an epoch logged again replaces
its own cells, and every change rewrites the whole file atomically, so a run killed at any
moment leaves the previous complete table, never a torn one. It is small: a row per epoch.

The resolved configuration passed to ``log_hyperparams`` goes to ``hparams.yaml`` beside it,
as Lightning's CSVLogger writes it.
"""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path
from typing import Any

from lightning_fabric.utilities.logger import _convert_params
from pytorch_lightning.core.saving import save_hparams_to_yaml
from pytorch_lightning.loggers.logger import Logger
from pytorch_lightning.utilities import rank_zero_only

from lovaszseg.loggers.epoch_rows import EpochRows, read_epoch_rows
from lovaszseg.runs.atomic import atomic_path, write_text_atomic

METRICS_FILE = "metrics.csv"
HPARAMS_FILE = "hparams.yaml"


class ResumableCSVLogger(Logger):
    """Writes ``metrics.csv`` and ``hparams.yaml`` straight into ``save_dir`` (no
    ``name/version_N`` subfolders): the run folder is the unit a person opens."""

    def __init__(self, save_dir: str | Path) -> None:
        super().__init__()
        self._save_dir = Path(save_dir)
        self._rows: EpochRows | None = None
        self._changed = False

    @property
    def name(self) -> str:
        return ""

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self._save_dir)

    @property
    def log_dir(self) -> str:
        return str(self._save_dir)

    @property
    def metrics_path(self) -> Path:
        return self._save_dir / METRICS_FILE

    @property
    def rows(self) -> EpochRows:
        """The table, starting from the file's rows when the run resumes in its folder."""
        if self._rows is None:
            self._rows = read_epoch_rows(self.metrics_path)
        return self._rows

    @rank_zero_only
    def log_hyperparams(
        self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any
    ) -> None:
        with atomic_path(self._save_dir / HPARAMS_FILE) as tmp:
            save_hparams_to_yaml(tmp, _convert_params(params))

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self._changed |= self.rows.add(metrics, step)

    @rank_zero_only
    def save(self) -> None:
        if self._changed:
            write_text_atomic(self.metrics_path, self.rows.to_csv())
            self._changed = False

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()
