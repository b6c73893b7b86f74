"""Decide which runs are repetitions of one configuration, and what else sets runs apart.

Runs are grouped by loss configuration: the ``loss`` choice, refined by the loss settings
whenever runs of one choice were given different ones (weights from the command line), so that
``lovasz_hinge_bce`` at 0.5/0.5 and at 0.3/0.7 never merge into one mean. Runs of different
data, or scored by another definition of the metric (task, classes), are never pooled: they form
panels of their own, and so do a study's continuation arms, each an experiment with its own
control: the restart arm (PaddleSeg's recipe: the baseline's weights through ``init_from``, a
fresh optimizer) and the continued arm (its checkpoint resumed with ``ckpt_path``, only the loss
changes). ``--by KEY`` splits panels by another setting; any other setting that differs inside a
panel is reported, never silently averaged.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lovaszseg.reporting.runs import Run
from lovaszseg.runs.contract import loss_of_checkpoint

UNSET = "unset"
_ABSENT = object()
RESTART = "restart"
"""The arm of an ``init_from`` run made before experiment configs named their arm."""

NOT_SETTINGS = (
    "seed",
    "paths",
    "logger",
    "hydra",
    "loss",
    "experiment",
    "ckpt_path",
    "init_from",
    "arm",
)
"""Keys and choices that legitimately differ between repetitions, or that the group label or
the panel already covers; everything else differing inside a panel is a caveat."""


def init_from(run: Run) -> str | None:
    """The checkpoint whose weights the run started from, as results.json or the config say."""
    value = (run.results or {}).get("init_from") or (run.config or {}).get("init_from")
    return str(value) if value else None


def _arm(run: Run) -> Mapping:
    arm = (run.config or {}).get("arm")  # the arm's experiment config: {name, from_loss}
    return arm if isinstance(arm, Mapping) else {}


def arm_of(run: Run) -> str | None:
    """The run's arm (``restart``, ``continued``), or None for a run that continues nothing."""
    name = _arm(run).get("name")
    return str(name) if name else (RESTART if init_from(run) else None)


def several_arms(runs: Iterable[Run]) -> bool:
    """Whether ``runs`` hold more than one arm, so that labels must say which."""
    return len({arm_of(run) for run in runs} - {None}) > 1


def with_arm(label: str, arm: str | None) -> str:
    """``bce → lovasz_hinge (continued)``: a group label that names its arm."""
    return f"{label} ({arm})" if arm else label


def pools(runs: Sequence[Run]) -> dict[Path, str | None]:
    """Each run's pool, named by what sets it apart (``data=voc2012``, within one data
    ``classes=21 (multiclass)``, within those ``arm=continued``); None for every run when all
    may be pooled."""
    named: dict[Path, list[str]] = {run.path: [] for run in runs}
    for members in _split(runs, "data", lambda run: run.data, named).values():
        for defined in _split(members, "classes", _metric_definition, named).values():
            _split(defined, "arm", arm_of, named)
    return {path: " · ".join(parts) or None for path, parts in named.items()}


def _split(
    runs: Sequence[Run], name: str, key: Callable[[Run], str | None], named: dict[Path, list[str]]
) -> dict[str | None, list[Run]]:
    """``runs`` by their ``key``, each named by it where they differ. A run that did not record
    it (dead before writing its results) is taken to share it when all the others agree."""
    values = {key(run) for run in runs} - {None}
    agreed = next(iter(values)) if len(values) == 1 else None
    split: dict[str | None, list[Run]] = defaultdict(list)
    for run in runs:
        value = key(run) or agreed
        split[value].append(run)
        if len(values) > 1:
            named[run.path].append(f"{name}={value or 'unknown'}")
    return split


def _metric_definition(run: Run) -> str | None:
    """What the run's mIoU averages over: its task's classes, by count (``21 (multiclass)``)."""
    return f"{len(run.class_names)} ({run.task})" if run.class_names and run.task else None


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"a.b.c": leaf}; lists become strings so that leaves are hashable."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value) if isinstance(value, list | dict) else value
    return flat


def is_under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(f"{prefix}.")


def differing_keys(settings: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Keys whose values are not the same in all ``settings``, with their distinct values."""
    table = pd.DataFrame([{k: str(v) for k, v in s.items()} for s in settings]).fillna(UNSET)
    return {key: sorted(table[key].unique()) for key in sorted(table) if table[key].nunique() > 1}


def loss_labels(runs: Iterable[Run]) -> dict[Path, str]:
    """Group label of each run: its loss choice, plus the loss settings that tell it apart.

    A run without ``.hydra/config.yaml`` joins its choice's group when all other runs of that
    choice agree on the settings, and is labelled "config unknown" when they do not.
    """
    runs = list(runs)
    name_arm = several_arms(runs)
    by_choice: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_choice[with_arm(_loss_name(run), arm_of(run) if name_arm else None)].append(run)
    labels = {}
    for choice, members in by_choice.items():
        differing = differing_keys(_loss_settings(r) for r in members if r.config is not None)
        for run in members:
            settings = _loss_settings(run)
            shown = ", ".join(f"{k}={settings.get(k, UNSET)}" for k in differing)
            shown = shown if run.config is not None else "config unknown"
            labels[run.path] = f"{choice} ({shown})" if differing else choice
    return labels


def _loss_name(run: Run) -> str:
    """The loss choice; ``bce → lovasz_hinge`` for a run that continues another (a study's arm),
    which must not merge with the direct mode. The first loss is named by the arm's config or by
    results.json (``init_from_loss``, recorded at training time), so the label survives copying
    the runs away from the checkpoints."""
    start, first = init_from(run), _arm(run).get("from_loss")
    if not first and start is not None:
        first = (run.results or {}).get("init_from_loss") or loss_of_checkpoint(Path(start))
    return f"{first} → {run.loss}" if first else run.loss


def setting_value(run: Run, key: str) -> str:
    """The value of a group choice (``data``) or config key (``data.difficulty``) in ``run``."""
    if key in run.choices:
        return run.choices[key]
    where = run.path / ".hydra" / "config.yaml"
    if run.config is None:
        raise ValueError(f"{run.path}: cannot look up {key!r}: the run has no {where.name}")
    try:
        value = OmegaConf.select(OmegaConf.create(dict(run.config)), key, default=_ABSENT)
    except OmegaConfBaseException:  # interpolation needing Hydra's runtime: show it unresolved
        value = flatten(run.config).get(key, _ABSENT)
    if value is _ABSENT:
        raise ValueError(f"{where}: no config key or group choice {key!r}")
    if OmegaConf.is_config(value) or isinstance(value, Mapping):
        raise ValueError(
            f"{where}: {key!r} is a config section, not a value; name a key inside it "
            f"(e.g. {key}.{next(iter(value), 'name')})"
        )
    return str(value)


def run_settings(run: Run) -> dict[str, Any]:
    """Group choices (keyed ``name=``) and config leaves of a run, minus what may differ between
    repetitions. A nested default ``loss_term@loss.terms.bce`` lands at its package."""
    choices = {
        f"{path}=": choice
        for name, choice in run.choices.items()
        if not _skipped(path := name.split("@", 1)[1] if "@" in name else name.replace("/", "."))
    }
    leaves = flatten(run.config or {}).items()
    return choices | {key: value for key, value in leaves if not _skipped(key)}


def _skipped(key: str) -> bool:
    return any(is_under(key, skip) for skip in NOT_SETTINGS)


def setting_caveats(runs: Iterable[Run], by: str | None = None) -> list[str]:
    """One line per setting (besides loss and seed) that differs among ``runs``.

    Choices are keyed ``name=`` so that when ``data`` itself differs, the many ``data.*`` keys
    that follow from it are not listed one by one.
    """
    differing = differing_keys(run_settings(run) for run in runs)
    groups = [key.removesuffix("=") for key in differing if key.endswith("=")]
    lines = []
    for key, values in differing.items():
        name = key.removesuffix("=")
        if (by is not None and is_under(name, by)) or (
            not key.endswith("=") and any(is_under(name, group) for group in groups)
        ):
            continue
        shown = " | ".join(values) if len(values) <= 4 else f"{len(values)} distinct values"
        lines.append(f"runs differ in `{name}` ({shown}); compare them apart with `--by {name}`")
    return lines


def _loss_settings(run: Run) -> dict[str, Any]:
    loss = (run.config or {}).get("loss")
    return flatten(loss, "loss.") if isinstance(loss, Mapping) else {}
