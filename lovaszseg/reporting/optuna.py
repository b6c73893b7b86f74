"""Optuna sweeps (``hparams_search=``) as the report sees them: the search's best trial.

hydra-optuna-sweeper leaves ``optimization_results.yaml`` (best parameters and value) in the
sweep folder beside the job folders; the jobs themselves are ordinary runs and are ranked with
the rest. This names the winning parameters and the job folder that holds them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

RESULTS_FILE = "optimization_results.yaml"


def find_searches(roots: Iterable[Path]) -> list[dict[str, Any]]:
    """Every Optuna sweep at or under ``roots``, in path order: its folder, trials, best value,
    best parameters and the job folder that ran them (None when no job's overrides match)."""
    sweeps = set()
    for root in roots:
        for current, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if RESULTS_FILE in files:
                sweeps.add(Path(current).resolve())
    return [read_search(sweep) for sweep in sorted(sweeps)]


def read_search(sweep: Path) -> dict[str, Any]:
    results = yaml.safe_load((sweep / RESULTS_FILE).read_text()) or {}
    params = dict(results.get("best_params") or {})
    jobs = sorted(p.parent.parent for p in sweep.glob("*/.hydra/overrides.yaml"))
    best_job = next((job for job in jobs if _job_params(job, params) == params), None)
    return {
        "sweep": str(sweep),
        "trials": len(jobs),
        "best_value": float(results.get("best_value", float("nan"))),
        "best_params": params,
        "best_job": str(best_job) if best_job else None,
    }


def _job_params(job: Path, wanted: dict[str, Any]) -> dict[str, Any]:
    """The job's values of the ``wanted`` keys, read from its ``.hydra/overrides.yaml``."""
    overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
    pairs = (str(override).partition("=") for override in overrides)
    return {key: yaml.safe_load(value) for key, _, value in pairs if key in wanted}


def describe(search: dict[str, Any]) -> str:
    """``<sweep>: 3 trials, best value 0.7312 with `a=1`, `b=0.25` (<job folder>)``"""
    params = ", ".join(
        f"`{key}={value:.4g}`" if isinstance(value, float) else f"`{key}={value}`"
        for key, value in search["best_params"].items()
    )
    where = Path(search["best_job"]).name if search["best_job"] else "job folder not found"
    return (
        f"`{search['sweep']}`: {search['trials']} trials, best value "
        f"{search['best_value']:.4f} with {params} ({where})"
    )
