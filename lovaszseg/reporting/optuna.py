"""Optuna sweeps (``hparams_search=``) as the report sees them: the search's best trial.

hydra-optuna-sweeper leaves ``optimization_results.yaml`` (best parameters and value) in the
sweep folder beside the job folders; the jobs themselves are ordinary runs and are ranked with
the rest. This names the winning parameters and the job folder that holds them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

RESULTS_FILE = "optimization_results.yaml"


@dataclass(frozen=True)
class Search:
    sweep: Path
    best_value: float
    best_params: dict[str, Any]
    best_job: Path | None
    trials: int


def find_searches(roots: Iterable[Path]) -> list[Search]:
    """Every Optuna sweep folder at or under ``roots``, in path order."""
    found: dict[Path, Search] = {}
    for root in roots:
        for current, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if RESULTS_FILE in files:
                sweep = Path(current).resolve()
                found.setdefault(sweep, read_search(sweep))
    return [found[path] for path in sorted(found)]


def read_search(sweep: Path) -> Search:
    results = yaml.safe_load((sweep / RESULTS_FILE).read_text()) or {}
    params = dict(results.get("best_params") or {})
    jobs = sorted(p.parent.parent for p in sweep.glob("*/.hydra/overrides.yaml"))
    best_job = next((job for job in jobs if _job_params(job, params) == params), None)
    return Search(
        sweep, float(results.get("best_value", float("nan"))), params, best_job, len(jobs)
    )


def _job_params(job: Path, wanted: dict[str, Any]) -> dict[str, Any]:
    """The job's values of the ``wanted`` keys, read from its ``.hydra/overrides.yaml``."""
    values = {}
    for override in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []:
        key, _, value = str(override).partition("=")
        if key in wanted:
            values[key] = yaml.safe_load(value)
    return values


def render_searches(searches: list[Search]) -> str:
    """A markdown section: each search's best value, parameters and job folder."""
    if not searches:
        return ""
    lines = ["", "## Optuna searches", ""]
    for search in searches:
        params = ", ".join(
            f"`{key}={value:.4g}`" if isinstance(value, float) else f"`{key}={value}`"
            for key, value in search.best_params.items()
        )
        where = search.best_job.name if search.best_job else "job folder not found"
        lines.append(
            f"- `{search.sweep}`: {search.trials} trials, best value {search.best_value:.4f} "
            f"with {params} ({where})"
        )
    return "\n".join(lines) + "\n"


def searches_to_dicts(searches: list[Search]) -> list[dict[str, Any]]:
    return [
        {
            "sweep": str(s.sweep),
            "trials": s.trials,
            "best_value": s.best_value,
            "best_params": s.best_params,
            "best_job": str(s.best_job) if s.best_job else None,
        }
        for s in searches
    ]
