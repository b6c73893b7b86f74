"""Lightning's ``WandbLogger`` with the run identity a W&B dashboard of loss comparisons needs.

Left unset, the run's name is its command-line overrides (``loss=bce,seed=2``) and its group is
its sweep (the multirun folder's name, after the experiment when there is one), so a sweep's
jobs sit together and read apart at a glance; ``summary_max`` metrics (``val/mIoU``) report
their best value in the runs table rather than the last one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from pytorch_lightning.loggers import WandbLogger

from lovaszseg.config.job import group_choices, in_multirun
from lovaszseg.config.resolvers import job_dirname


def run_identity(unnamed: str | None) -> tuple[str | None, str | None]:
    """(name, group) of this Hydra job: its overrides (``unnamed`` when it has none), and its
    sweep or experiment."""
    if not HydraConfig.initialized():
        return unnamed, None
    hydra_cfg = HydraConfig.get()
    overrides = hydra_cfg.job.override_dirname
    name = job_dirname(0, overrides).removeprefix("0_") if overrides else unnamed
    experiment = group_choices()["experiment"]
    if in_multirun():
        sweep = Path(hydra_cfg.sweep.dir).name
        return name, f"{experiment}-{sweep}" if experiment else sweep
    return name, experiment


class LovaszsegWandbLogger(WandbLogger):
    """``WandbLogger`` naming and grouping runs from Hydra, with max summaries for ``summary_max``."""

    def __init__(
        self,
        name: str | None = None,
        group: str | None = None,
        unnamed: str | None = None,
        summary_max: Sequence[str] = ("val/mIoU",),
        **kwargs: Any,
    ) -> None:
        default_name, default_group = run_identity(unnamed)
        super().__init__(name=name or default_name, group=group or default_group, **kwargs)
        self._summary_max = list(summary_max)
        self._summaries_defined = False

    @property
    def experiment(self) -> Any:
        run = super().experiment
        if not self._summaries_defined:
            self._summaries_defined = True
            for metric in self._summary_max:
                run.define_metric(metric, summary="max")
        return run
