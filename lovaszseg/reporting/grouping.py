"""Which runs repeat one configuration, and what else sets runs apart.

Groups are loss choices, refined by loss settings where runs of one choice differ (0.5/0.5 never
averages with 0.3/0.7). Different data, metric definitions (task, classes) or a study's arms
(restart: ``init_from``; continued: ``ckpt_path``) are never pooled; other differences are noted.
"""

from __future__ import annotations

import re
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
NOT_SETTINGS = re.compile(
    r"(seed|paths|logger|hydra|loss|experiment|ckpt_path|init_from|arm)(\.|=|$)"
)
"""Keys that may differ between repetitions, or that the label or the panel already says."""


def init_from(run: Run) -> str | None:
    """The checkpoint whose weights the run started from."""
    value = (run.results or {}).get("init_from") or (run.config or {}).get("init_from")
    return str(value) if value else None


def _arm(run: Run) -> Mapping:
    arm = (run.config or {}).get("arm")  # the arm's experiment config: {name, from_loss}
    return arm if isinstance(arm, Mapping) else {}


def arm_of(run: Run) -> str | None:
    """``restart``, ``continued``, or None for a run that continues nothing."""
    name = _arm(run).get("name")
    return str(name) if name else (RESTART if init_from(run) else None)


def several_arms(runs: Iterable[Run]) -> bool:
    return len({arm_of(run) for run in runs} - {None}) > 1


def with_arm(label: str, arm: str | None) -> str:
    return f"{label} ({arm})" if arm else label


def pools(runs: Sequence[Run]) -> dict[Path, str | None]:
    """Each run's pool named by what sets it apart (``data=voc2012 · arm=continued``); None when
    all may be pooled."""
    named: dict[Path, list[str]] = {run.path: [] for run in runs}
    for members in _split(runs, "data", lambda run: run.data, named).values():
        for defined in _split(members, "classes", _metric_definition, named).values():
            _split(defined, "arm", arm_of, named)
    return {path: " · ".join(parts) or None for path, parts in named.items()}


def _split(
    runs: Sequence[Run], name: str, key: Callable[[Run], str | None], named: dict[Path, list[str]]
) -> dict[str | None, list[Run]]:
    """``runs`` by ``key``, named where they differ; a run that did not record it shares it
    when all the others agree."""
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
    """What the run's mIoU averages over: ``21 (multiclass)``."""
    return f"{len(run.class_names)} ({run.task})" if run.class_names and run.task else None


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a.b.c": leaf}; lists become strings, to be hashable."""
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
    """Keys whose values differ among ``settings``, with their values."""
    table = pd.DataFrame([{k: str(v) for k, v in s.items()} for s in settings]).fillna(UNSET)
    return {key: sorted(table[key].unique()) for key in sorted(table) if table[key].nunique() > 1}


def loss_labels(runs: Iterable[Run]) -> dict[Path, str]:
    """Each run's loss choice, plus the loss settings that tell it apart ("config unknown" for
    a run without ``.hydra/config.yaml`` where they differ)."""
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
    """``bce → lovasz_hinge`` for a run that continues another, apart from the direct mode; the
    first loss comes from the arm or results.json, so it survives copying runs elsewhere."""
    start, first = init_from(run), _arm(run).get("from_loss")
    if not first and start is not None:
        first = (run.results or {}).get("init_from_loss") or loss_of_checkpoint(Path(start))
    return f"{first} → {run.loss}" if first else run.loss


def setting_value(run: Run, key: str) -> str:
    """The run's group choice (``data``) or config value (``data.difficulty``)."""
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
    """Group choices (keyed ``name=``, at their package) and config leaves, less NOT_SETTINGS."""
    package = {name: name.split("@", 1)[-1].replace("/", ".") for name in run.choices}
    settings = {f"{package[name]}=": value for name, value in run.choices.items()}
    settings |= flatten(run.config or {})
    return {key: value for key, value in settings.items() if not NOT_SETTINGS.match(key)}


def setting_caveats(runs: Iterable[Run], by: str | None = None) -> list[str]:
    """One line per setting that differs among ``runs``; a differing choice (``data=``) stands
    for the keys under it."""
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
