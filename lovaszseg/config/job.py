"""What Hydra knows about the running job, read in one place: the config group options it was
composed from and whether it is one job of a sweep. Outside a Hydra app (tests, notebooks)
nothing was chosen and nothing is swept."""

from __future__ import annotations

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
