"""Whether Lightning will re-execute the command line to start the other ranks.

Lightning has no public way to ask; this is the one place that names its private launcher class
(``tests/train/test_relaunch.py`` pins the behaviour relied on, so an upgrade that changes it
fails there). The ``ddp`` strategy always holds a ``_SubprocessScriptLauncher``; it starts
processes only when the cluster environment does not (under SLURM, srun has started every rank
already).
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.strategies.launchers import _SubprocessScriptLauncher


def relaunches_script(trainer: pl.Trainer) -> bool:
    """True when ``trainer.fit`` would start the other ranks by running the command line again."""
    launcher = trainer.strategy.launcher
    return (
        isinstance(launcher, _SubprocessScriptLauncher)
        and not launcher.cluster_environment.creates_processes_externally
    )
