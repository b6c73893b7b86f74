"""``results.json``: the one file per run that reports and sweeps read (schema in the README).

It is rewritten after every validation (status ``running``), at the end (``completed``) and on
failure (``failed`` / ``interrupted``), always atomically, so a reader never sees half a file
and a killed run still leaves its latest numbers behind. The writer runs as a callback inside
the training process, which keeps it correct under ``ddp_spawn`` where the launching process
never sees the module's state.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from lovaszseg.runs.atomic import write_json_atomic


def read_results(path: str | Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as err:
        raise ValueError(f"no results file at {path}") from err


def best_and_final(history: Sequence[Mapping[str, Any]]) -> tuple[dict | None, dict | None]:
    """Best epoch by ``val/mIoU`` (earliest on ties) and the last validated epoch."""
    scored = [h for h in history if h.get("val/mIoU") is not None]
    if not scored:
        return None, (dict(history[-1]) if history else None)
    best = max(scored, key=lambda h: (h["val/mIoU"], -h["epoch"]))
    return dict(best), dict(history[-1])


class ResultsWriter(pl.Callback):
    """Keeps ``results.json`` current; ``meta`` holds task, data, loss, model, experiment, seed."""

    def __init__(self, path: str | Path, meta: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.meta = dict(meta)

    def payload(self, trainer: pl.Trainer, module: pl.LightningModule, status: str) -> dict:
        best, final = best_and_final(module.history)
        return {
            **self.meta,
            "epochs": trainer.max_epochs,
            "world_size": trainer.world_size,
            "status": status,
            "best": best,
            "final": final,
            "wall_time_s": round(module.fit_time_s(), 2),
        }

    def write(
        self, trainer: pl.Trainer, module: pl.LightningModule, status: str, **extra: Any
    ) -> None:
        if trainer.is_global_zero:
            write_json_atomic(self.path, self.payload(trainer, module, status) | extra)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.write(trainer, pl_module, "running")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.write(trainer, pl_module, "completed")

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        # Ctrl-C, SIGTERM (Lightning's SIGTERMException) and a job manager's sys.exit stop a
        # healthy run from outside; anything else is the run's own failure
        interrupted = isinstance(exception, KeyboardInterrupt | SystemExit)
        status = "interrupted" if interrupted else "failed"
        self.write(trainer, pl_module, status, error=f"{type(exception).__name__}: {exception}")
