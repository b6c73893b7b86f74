"""Which continuation arm a run belongs to, and the loss it continued from.

A study continues each seed's baseline in two ways: the restart arm (PaddleSeg's recipe: the
weights only, through ``init_from``, with a fresh optimizer) and the continued arm (the
baseline's checkpoint resumed with ``ckpt_path``: its optimizer's state and the tail of its
schedule, only the loss changes). Each arm's experiment config names itself
(``arm: {name, from_loss}``); runs made before that key existed are told by ``init_from``,
which only the restart arm uses. The two arms are different experiments, each with its own
control, so a report never pools or ranks them together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from lovaszseg.reporting.runs import Run

RESTART = "restart"
"""The arm of an ``init_from`` run whose config does not name its arm."""


def _arm_config(run: Run) -> Mapping:
    arm = (run.config or {}).get("arm")
    return arm if isinstance(arm, Mapping) else {}


def init_from(run: Run) -> str | None:
    """The checkpoint whose weights the run started from, as results.json or the config say."""
    value = (run.results or {}).get("init_from") or (run.config or {}).get("init_from")
    return str(value) if value else None


def arm_of(run: Run) -> str | None:
    """The run's arm (``restart``, ``continued``), or None for a run that continues nothing."""
    name = _arm_config(run).get("name")
    if name:
        return str(name)
    return RESTART if init_from(run) else None


def from_loss(run: Run) -> str | None:
    """The loss of the run the arm continued from, when its config names it."""
    value = _arm_config(run).get("from_loss")
    return str(value) if value else None


def several_arms(runs: Iterable[Run]) -> bool:
    """Whether ``runs`` hold more than one arm, so that labels must say which."""
    return len({arm_of(run) for run in runs} - {None}) > 1


def with_arm(label: str, arm: str | None) -> str:
    """``bce → lovasz_hinge (continued)``: a group label that names its arm."""
    return f"{label} ({arm})" if arm else label
