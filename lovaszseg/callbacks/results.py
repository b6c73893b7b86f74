"""Keeps the run's ``results.json`` current (its contract: ``lovaszseg.runs.contract``).

It is rewritten after every validation (status ``running``), at the end (``completed``) and on
failure (``failed`` / ``interrupted``), always atomically, so a reader never sees half a file
and a killed run still leaves its latest numbers behind. The writer runs as a callback inside
the training process, which keeps it correct under ``ddp_spawn`` where the launching process
never sees the module's state; the last results written stay in memory for the run's summary.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from lovaszseg.runs import contract


class ResultsWriter(pl.Callback):
    """Keeps ``results.json`` current; ``meta`` holds task, data, loss, model, experiment, seed."""

    def __init__(self, path: str | Path, meta: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.meta = dict(meta)
        self.results: dict[str, Any] | None = None
        """What was last written (in the process that trained, on rank zero)."""

    def payload(self, trainer: pl.Trainer, module: pl.LightningModule, status: str) -> dict:
        best, final = contract.best_and_final(module.history)
        return {
            **self.meta,
            "epochs": trainer.max_epochs,
            "world_size": trainer.world_size,
            contract.STATUS: status,
            contract.BEST: best,
            contract.FINAL: final,
            "wall_time_s": round(module.fit_time_s(), 2),
        }

    def write(
        self, trainer: pl.Trainer, module: pl.LightningModule, status: str, **extra: Any
    ) -> None:
        if trainer.is_global_zero:
            self.results = self.payload(trainer, module, status) | extra
            contract.write_results(self.path, self.results)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.write(trainer, pl_module, contract.RUNNING)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # not on_train_end: a run killed inside its last write resumes with max_epochs already
        # reached, and Lightning then skips on_train_end; on_fit_end ends every successful fit
        self.write(trainer, pl_module, contract.COMPLETED)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        # Ctrl-C, SIGTERM (Lightning's SIGTERMException) and a job manager's sys.exit stop a
        # healthy run from outside; anything else is the run's own failure
        interrupted = isinstance(exception, KeyboardInterrupt | SystemExit)
        status = contract.INTERRUPTED if interrupted else contract.FAILED
        self.write(trainer, pl_module, status, error=f"{type(exception).__name__}: {exception}")
