"""What Hydra knows about the running job, read in one place: the config group options it was
composed from and whether it is one job of a sweep. Outside a Hydra app (tests, notebooks)
nothing was chosen and nothing is swept."""

from __future__ import annotations

import importlib

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

CHOICE_GROUPS = ("data", "loss", "model", "experiment")


def group_choices() -> dict[str, str | None]:
    """The options of ``CHOICE_GROUPS`` this job was composed from (``None`` outside a Hydra app)."""
    if not HydraConfig.initialized():
        return dict.fromkeys(CHOICE_GROUPS)
    choices = HydraConfig.get().runtime.choices
    return {group: choices.get(group) for group in CHOICE_GROUPS}


def in_multirun() -> bool:
    """Whether this job is one of a sweep (``-m``)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def refuse_one_run_of_a_sweep(experiment: str | None) -> None:
    """An experiment that defines a sweep (the usage modes) means nothing as one run."""
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    params = dict(hydra_cfg.sweeper.get("params") or {})
    chosen = {o.split("=", 1)[0].lstrip("+~") for o in hydra_cfg.overrides.task}
    unchosen = sorted(set(params) - chosen)
    if not in_multirun() and unchosen:
        swept = " ".join(f"{key}={params[key]}" for key in unchosen)
        raise ValueError(
            f"experiment={experiment} is a sweep ({swept}): add -m to run it all, or choose "
            f"one, e.g. {unchosen[0]}={str(params[unchosen[0]]).split(',')[0]}"
        )


def run_main_of(module: str) -> None:
    """Run ``module.main`` as imported, for ``python -m module``. In the ``__main__`` copy, the
    entry point's functions are pickled by value when submitit sends the task to a SLURM job:
    their code runs there as ``<dynamic-code>``, outside the package, and a refusal raised in them
    reads as a bug. Imported, they are pickled by reference."""
    importlib.import_module(module).main()
