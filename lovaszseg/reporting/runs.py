"""Find training runs on disk and load what each one recorded.

A run is a Hydra job directory holding any of: ``results.json`` (the run contract, rewritten
while the run trains), ``metrics.csv`` (Lightning's CSVLogger) and ``.hydra/`` (the composed
config and the group choices, written at start). A run that died early has no ``results.json``,
so every field falls back to the next source, and such a run is loaded rather than dropped: a
sweep with crashed jobs must say so.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lovaszseg.reporting.metrics_csv import Curves, read_curves
from lovaszseg.runs import contract

RUN_MARKERS = (contract.RESULTS_FILE, "metrics.csv", ".hydra/config.yaml")
"""A directory holding any of these is a run (a job dir of a sweep, or a single run)."""

NOT_RUN_CONTAINERS = frozenset({".hydra", "checkpoints", "wandb", "__pycache__", ".git"})
"""Folders inside runs and sweeps that never hold runs themselves; not searched."""

INCOMPLETE = "incomplete"
"""A run cut short: interrupted (resumable), or dead before it wrote its results."""

REPORT_STATUS = {contract.INTERRUPTED: INCOMPLETE}
"""The contract's statuses as a report names them; the others (completed, running, failed)
keep their names."""


@dataclass(frozen=True)
class Run:
    """One training run as the report sees it; fields are None where nothing recorded them."""

    path: Path
    loss: str
    seed: int | None
    status: str
    task: str | None = None
    data: str | None = None
    model: str | None = None
    class_names: tuple[str, ...] = ()
    curves: Curves = field(default_factory=dict)
    results: Mapping[str, Any] | None = None
    config: Mapping[str, Any] | None = None
    choices: Mapping[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.status == contract.COMPLETED


def find_run_dirs(root: Path) -> list[Path]:
    """Every run directory at or under ``root`` (a run dir, a sweep dir, or a tree of sweeps)."""
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory (expected a run or a Hydra sweep directory)")
    if _is_run_dir(root):
        return [root]
    found = []
    for current, dirs, _files in os.walk(root):
        if Path(current) != root and _is_run_dir(Path(current)):
            found.append(Path(current))
            dirs.clear()
        dirs[:] = sorted(d for d in dirs if d not in NOT_RUN_CONTAINERS)
    if not found:
        raise ValueError(
            f"{root}: no runs found: expected a run directory (holding results.json, "
            "metrics.csv or .hydra/config.yaml) or a Hydra sweep directory "
            "(multirun.yaml beside numbered job directories 0/, 1/, ...)"
        )
    return sorted(found, key=_natural_key)


def load_runs(roots: Iterable[Path]) -> list[Run]:
    """Load the runs under all ``roots``; a run reached twice (dir and its parent) counts once."""
    seen: dict[Path, Run] = {}
    for root in roots:
        for run_dir in find_run_dirs(Path(root)):
            if run_dir.resolve() not in seen:
                seen[run_dir.resolve()] = load_run(run_dir)
    return list(seen.values())


def load_run(path: Path) -> Run:
    """Load one run directory; raises ValueError naming the file that cannot be parsed."""
    results = contract.read_results(path) if contract.results_path(path).is_file() else {}
    config = _read_yaml(path / ".hydra" / "config.yaml")
    choices = _dig(_read_yaml(path / ".hydra" / "hydra.yaml"), "hydra", "runtime", "choices")
    choices = {str(k): str(v) for k, v in (choices or {}).items() if v is not None}
    curves = read_curves(path / "metrics.csv") if (path / "metrics.csv").is_file() else {}
    config_data = _dig(config, "data") or {}
    class_names = _class_names(results, config_data, curves)
    status = results.get(contract.STATUS) or INCOMPLETE
    return Run(
        path=path,
        loss=str(results.get("loss") or choices.get("loss") or "unknown"),
        seed=_as_int(results.get("seed", _dig(config, "seed"))),
        status=REPORT_STATUS.get(status, status),
        task=results.get("task")
        or _dig(config, "loss", "task")
        or _task_from_class_count(config_data, class_names),
        data=results.get("data") or choices.get("data"),
        model=results.get("model") or choices.get("model"),
        class_names=class_names,
        curves=curves,
        results=results or None,
        config=config,
        choices=choices,
    )


def _is_run_dir(path: Path) -> bool:
    return any((path / marker).is_file() for marker in RUN_MARKERS)


def _natural_key(path: Path) -> tuple:
    """Sort job dirs 0, 1, ..., 10 (or ``2_loss=bce``, ``10_loss=ce``) by Hydra's job number."""
    numbers = (re.match(r"\d+(?=_|$)", part) for part in path.parts)
    return tuple(
        (0, int(n.group()), part) if n else (1, 0, part)
        for n, part in zip(numbers, path.parts, strict=True)
    )


def _read_yaml(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read YAML ({err})") from err
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"{path}: expected a YAML mapping, got {type(data).__name__}")
    return data


def _dig(tree: Mapping[str, Any] | None, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, Mapping):
            return None
        tree = tree.get(key)
    return tree


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _class_names(
    results: Mapping[str, Any], config_data: Mapping[str, Any], curves: Curves
) -> tuple[str, ...]:
    """Class order from results.json, else the data config; CSVLogger sorts its columns."""
    per_class = _dig(results, contract.BEST, contract.PER_CLASS_IOU)
    if isinstance(per_class, Mapping) and per_class:
        return tuple(per_class)
    names = config_data.get("class_names")
    if isinstance(names, list) and names:
        return tuple(str(n) for n in names)
    return tuple(name for key in curves if (name := contract.class_of_iou_key(key)))


def _task_from_class_count(
    config_data: Mapping[str, Any], class_names: tuple[str, ...]
) -> str | None:
    count = _as_int(config_data.get("num_classes")) or len(class_names) or None
    if count is None:
        return None
    return "binary" if count == 2 else "multiclass"
