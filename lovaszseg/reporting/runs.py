"""Find training runs and Optuna searches on disk, and load what each one recorded.

A run is a Hydra job directory with ``results.json``, ``metrics.csv`` or ``.hydra/``; one that
died early lacks some, so each field falls back to the next source and the run is still listed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from lovaszseg.runs import contract

RUN_MARKERS = (contract.RESULTS_FILE, "metrics.csv", ".hydra/config.yaml")
NOT_RUN_CONTAINERS = frozenset({".hydra", "checkpoints", "wandb", "__pycache__", ".git"})
INCOMPLETE = "incomplete"
"""Interrupted, or dead before writing results.json: either way, cut short."""
OPTUNA_RESULTS = "optimization_results.yaml"


Curves = dict[str, dict[int, float]]


def read_curves(path: Path) -> Curves:
    """Every logged metric of a CSVLogger ``metrics.csv`` as {epoch: value}; ValueError names a
    file that is not CSVLogger's. A resumed run re-logs the epoch it was killed in (and old runs
    log sparse rows), so the last value logged in an epoch wins."""
    try:  # round_trip parses each cell as Python's float() does, to the last bit
        table = pd.read_csv(path, encoding="utf-8", float_precision="round_trip")
    except pd.errors.EmptyDataError:
        return {}
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise ValueError(f"{path}: cannot read metrics.csv ({err})") from err
    if "epoch" not in table and "step" in table:
        return {}  # CSVLogger adds the epoch column with the first epoch's row
    if "epoch" not in table:
        raise ValueError(
            f"{path}: not a Lightning CSVLogger file: expected an 'epoch' column, "
            f"found {list(table.columns[:8])}"
        )
    numbers = table.apply(pd.to_numeric, errors="coerce")
    bad = (table.notna() & numbers.isna()).stack()
    if bad.any():
        row, column = bad[bad].index[0]
        raise ValueError(
            f"{path}, line {row + 2}, column {column!r}: expected a number, "
            f"got {table.at[row, column]!r}"
        )
    per_epoch = numbers.drop(columns="step", errors="ignore").groupby("epoch").last()
    return {
        str(name): {int(epoch): float(value) for epoch, value in column.dropna().items()}
        for name, column in per_epoch.items()
        if column.notna().any()
    }


@dataclass(frozen=True)
class Run:
    """One training run as the report sees it; None where nothing recorded a field."""

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
    """Every run directory at or under ``root``, in Hydra's job order (9 before 10)."""
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
    return sorted(found, key=lambda path: tuple(map(_job_order, path.parts)))


def load_runs(roots: Iterable[Path]) -> list[Run]:
    """The runs under all ``roots``, each once even if reached twice."""
    seen: dict[Path, Run] = {}
    for root in roots:
        for run_dir in find_run_dirs(Path(root)):
            if run_dir.resolve() not in seen:
                seen[run_dir.resolve()] = load_run(run_dir)
    return list(seen.values())


def load_run(path: Path) -> Run:
    """One run directory; ValueError names a file that cannot be parsed."""
    results = contract.read_results(path) if contract.results_path(path).is_file() else {}
    config = _read_yaml(path / ".hydra" / "config.yaml")
    choices = _dig(_read_yaml(path / ".hydra" / "hydra.yaml"), "hydra", "runtime", "choices")
    choices = {str(k): str(v) for k, v in (choices or {}).items() if v is not None}
    curves = read_curves(path / "metrics.csv") if (path / "metrics.csv").is_file() else {}
    data = _dig(config, "data") or {}
    # class order from results.json, else the data config; CSVLogger sorts its columns
    per_class = _dig(results, contract.BEST, contract.PER_CLASS_IOU)
    if isinstance(per_class, Mapping) and per_class:
        class_names = tuple(per_class)
    elif isinstance(data.get("class_names"), list) and data["class_names"]:
        class_names = tuple(str(n) for n in data["class_names"])
    else:
        class_names = tuple(name for key in curves if (name := contract.class_of_iou_key(key)))
    count = _as_int(data.get("num_classes")) or len(class_names)
    status = results.get(contract.STATUS) or INCOMPLETE
    return Run(
        path=path,
        loss=str(results.get("loss") or choices.get("loss") or "unknown"),
        seed=_as_int(results.get("seed", _dig(config, "seed"))),
        status=INCOMPLETE if status == contract.INTERRUPTED else status,
        task=results.get("task")
        or _dig(config, "loss", "task")
        or (("binary" if count == 2 else "multiclass") if count else None),
        data=results.get("data") or choices.get("data"),
        model=results.get("model") or choices.get("model"),
        class_names=class_names,
        curves=curves,
        results=results or None,
        config=config,
        choices=choices,
    )


def find_searches(roots: Iterable[Path]) -> list[dict[str, Any]]:
    """Every Optuna sweep under ``roots``: trials, best value and parameters, and the job that
    ran them (None when no job's overrides match)."""
    sweeps = {found.parent.resolve() for root in roots for found in root.rglob(OPTUNA_RESULTS)}
    return [_read_search(sweep) for sweep in sorted(sweeps)]


def _read_search(sweep: Path) -> dict[str, Any]:
    results = yaml.safe_load((sweep / OPTUNA_RESULTS).read_text()) or {}
    params = dict(results.get("best_params") or {})
    jobs = sorted(p.parent.parent for p in sweep.glob("*/.hydra/overrides.yaml"))

    def job_params(job: Path) -> dict[str, Any]:
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        pairs = (str(override).partition("=") for override in overrides)
        return {key: yaml.safe_load(value) for key, _, value in pairs if key in params}

    best_job = next((job for job in jobs if job_params(job) == params), None)
    return {
        "sweep": str(sweep),
        "trials": len(jobs),
        "best_value": float(results.get("best_value", float("nan"))),
        "best_params": params,
        "best_job": str(best_job) if best_job else None,
    }


def _job_order(part: str) -> tuple:
    """Hydra numbers job dirs ``2`` or ``2_loss=bce``."""
    number = re.match(r"\d+(?=_|$)", part)
    return (0, int(number.group()), part) if number else (1, 0, part)


def _is_run_dir(path: Path) -> bool:
    return any((path / marker).is_file() for marker in RUN_MARKERS)


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
        tree = tree.get(key) if isinstance(tree, Mapping) else None
    return tree


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
