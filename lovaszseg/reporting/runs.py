"""Find training runs on disk and load what each one recorded.

A run is a Hydra job directory holding any of: ``results.json`` (written when the run
finishes), ``metrics.csv`` (Lightning's CSVLogger, written while it trains) and ``.hydra/``
(the composed config and the group choices, written at start). A crashed run has no
``results.json``, so every field falls back to the next source, and such a run is loaded as
incomplete rather than dropped: a sweep with crashed jobs must say so.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lovaszseg.reporting.metrics_csv import Curves, read_curves

RUN_MARKERS = ("results.json", "metrics.csv", ".hydra/config.yaml")
"""A directory holding any of these is a run (a job dir of a sweep, or a single run)."""

NOT_RUN_CONTAINERS = frozenset({".hydra", "checkpoints", "wandb", "__pycache__", ".git"})
"""Folders inside runs and sweeps that never hold runs themselves; not searched."""

COMPLETED = "completed"
INCOMPLETE = "incomplete"


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
    experiment: str | None = None
    class_names: tuple[str, ...] = ()
    curves: Curves = field(default_factory=dict)
    results: Mapping[str, Any] | None = None
    config: Mapping[str, Any] | None = None
    choices: Mapping[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.status == COMPLETED


def find_run_dirs(root: Path) -> list[Path]:
    """Every run directory at or under ``root`` (a run dir, a sweep dir, or a tree of sweeps)."""
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory (expected a run or a Hydra sweep directory)")
    if _is_run_dir(root):
        return [root]
    found = []
    for current, dirs, _files in os.walk(root):
        here = Path(current)
        if here != root and _is_run_dir(here):
            found.append(here)
            dirs.clear()
            continue
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
            key = run_dir.resolve()
            if key not in seen:
                seen[key] = load_run(run_dir)
    return list(seen.values())


def load_run(path: Path) -> Run:
    """Load one run directory; raises ValueError naming the file that cannot be parsed."""
    results = _read_json(path / "results.json") or {}
    config = _read_yaml(path / ".hydra" / "config.yaml")
    hydra_cfg = _read_yaml(path / ".hydra" / "hydra.yaml") or {}
    choices = _dig(hydra_cfg, "hydra", "runtime", "choices") or {}
    metrics_path = path / "metrics.csv"
    curves = read_curves(metrics_path) if metrics_path.is_file() else {}
    config_data = _dig(config, "data") or {}
    class_names = _class_names(results, config_data, curves)
    return Run(
        path=path,
        loss=str(results.get("loss") or choices.get("loss") or "unknown"),
        seed=_as_int(results.get("seed", _dig(config, "seed"))),
        status=str(results.get("status", INCOMPLETE)),
        task=results.get("task")
        or _dig(config, "loss", "task")
        or _task_from_class_count(config_data, class_names),
        data=results.get("data") or choices.get("data"),
        model=results.get("model") or choices.get("model"),
        experiment=results.get("experiment") or choices.get("experiment"),
        class_names=class_names,
        curves=curves,
        results=results or None,
        config=config,
        choices={str(k): str(v) for k, v in choices.items() if v is not None},
    )


def _is_run_dir(path: Path) -> bool:
    return any((path / marker).is_file() for marker in RUN_MARKERS)


def _natural_key(path: Path) -> tuple:
    """Sort job dirs 0, 1, ..., 10 (or ``2_loss=bce``, ``10_loss=ce``) by Hydra's job number."""
    keys = []
    for part in path.parts:
        number = re.match(r"\d+(?=_|$)", part)
        keys.append((0, int(number.group()), part) if number else (1, 0, part))
    return tuple(keys)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read results.json ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


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
    per_class = _dig(results, "best", "per_class_iou")
    if isinstance(per_class, Mapping) and per_class:
        return tuple(per_class)
    names = config_data.get("class_names")
    if isinstance(names, list) and names:
        return tuple(str(n) for n in names)
    return tuple(name.removeprefix("val/IoU_") for name in curves if name.startswith("val/IoU_"))


def _task_from_class_count(
    config_data: Mapping[str, Any], class_names: tuple[str, ...]
) -> str | None:
    count = _as_int(config_data.get("num_classes")) or len(class_names) or None
    if count is None:
        return None
    return "binary" if count == 2 else "multiclass"
