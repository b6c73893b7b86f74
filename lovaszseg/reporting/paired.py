"""Comparisons paired by seed: the t-test, what continuing gains over stopping, Holm's correction.

Where every mode of a study continues from its seed's baseline checkpoint, what the seeds share
cancels in the per-seed difference, so a paired test sees effects the groups' spread hides.
Continuing is also paired with just stopping: each run's last score against the last score of
the run it continued from, since a fresh optimizer can cost points that the extra steps then win
back. Both sides are final validations, the weights a user keeps; a best epoch would be the
maximum of several noisy scores, favoured against the one final score it is compared with.

Several modes tested against one control overstate the evidence if the smallest p is read
against 0.05: Holm–Bonferroni keeps the chance of any false claim at 0.05 without assuming the
tests independent (modes of one seed share their checkpoint). scipy's
``false_discovery_control`` is Benjamini–Hochberg, which controls another error rate. Each family
is one panel, one comparison and one metric.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from statistics import fmean
from typing import TYPE_CHECKING, Any

import pandas as pd
from scipy import stats

from lovaszseg.reporting.runs import Run
from lovaszseg.runs import contract

if TYPE_CHECKING:
    from lovaszseg.reporting.aggregate import Report

COMPARISONS = ("paired_vs_baseline", "paired_vs_stopping")
"""The group keys holding paired tests of the ranked metric; ``per_class_<key>`` per class."""


def sample_std(values: Sequence[float]) -> float | None:
    """ddof=1, summed with ``math.fsum`` so that the order the runs were found in cannot change
    the last bit of a committed report; None below two values."""
    if len(values) < 2:
        return None
    mean = fmean(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def paired_test(deltas: pd.Series) -> dict[str, Any] | None:
    """Per-seed differences (indexed by seed), their mean and the paired t-test: ``t`` and the
    two-sided ``p`` are None below two pairs or when the differences do not vary."""
    deltas = deltas.dropna()
    if deltas.empty:
        return None
    values, n = deltas.tolist(), len(deltas)
    mean, std = fmean(values), sample_std(values)
    t = mean / (std / math.sqrt(n)) if std else None
    p = None if t is None else float(2.0 * stats.t.sf(abs(t), n - 1))
    seeds = [int(seed) for seed in deltas.index]
    return {"n": n, "seeds": seeds, "deltas": values, "mean": mean, "t": t, "p": p}


def critical_t(pairs: int, alpha: float = 0.05) -> float:
    """The |t| a paired t-test over ``pairs`` seeds must pass for two-sided p < ``alpha``."""
    if pairs < 2:
        raise ValueError(f"critical_t needs at least 2 pairs, got {pairs}")
    return float(stats.t.isf(alpha / 2.0, pairs - 1))


def last_score(run: Run, key: str) -> float | None:
    """The run's ``key`` at its last validation: the curve's last epoch, else results.json's
    ``final`` (a class's IoU there sits under per_class_iou)."""
    if curve := run.curves.get(key):
        return curve[max(curve)]
    final = (run.results or {}).get("final") or {}
    name = contract.class_of_iou_key(key)
    value = final.get(key, (final.get(contract.PER_CLASS_IOU) or {}).get(name) if name else None)
    return None if value is None else float(value)


def stopped_by_seed(runs: Sequence[Run]) -> dict[int, Run]:
    """The finished runs continued from, by seed; raises ValueError for a seed given twice."""
    by_seed: dict[int, Run] = {}
    for run in (run for run in runs if run.complete and run.seed is not None):
        if run.seed in by_seed:
            raise ValueError(
                f"--continued-from: seed {run.seed} is run twice ({by_seed[run.seed].path} and "
                f"{run.path}); expected one run per seed to continue from"
            )
        by_seed[run.seed] = run
    if not by_seed:
        raise ValueError("--continued-from: no finished run with a seed to continue from")
    return by_seed


def pair_up(
    group: dict[str, Any], against: str, deltas: pd.DataFrame, names: Iterable[str]
) -> None:
    """Set the group's ``paired_vs_<against>`` from the per-seed differences of ``best`` (the
    ranked metric), and ``per_class_paired_vs_<against>`` from those of ``iou:<class>``."""
    group[f"paired_vs_{against}"] = paired_test(deltas["best"])
    group[f"per_class_paired_vs_{against}"] = {
        name: test
        for name in names
        if f"iou:{name}" in deltas and (test := paired_test(deltas[f"iou:{name}"]))
    }


def compare_to_stopping(report: Report, stopped: Sequence[Run]) -> None:
    """Pair every group's counted runs' last scores with those of their seed's stopped run (a
    seed repeated in a group pairs with none): ``paired_vs_stopping`` and its per-class twin."""
    by_seed = stopped_by_seed(stopped)
    for panel in report.panels:
        keys = {"best": report.metric}
        keys |= {f"iou:{name}": contract.class_iou_key(name) for name in panel["class_names"]}

        def last_scores(runs: Sequence[Run], keys: dict[str, str] = keys) -> pd.DataFrame:
            scores = {run.seed: [last_score(run, key) for key in keys.values()] for run in runs}
            return pd.DataFrame(scores, index=list(keys), dtype=float).T

        stopping, missing = last_scores(list(by_seed.values())), set()
        for group in panel["groups"]:
            runs = [report.runs[r["path"]] for r in group["runs"] if r["counted"]]
            missing |= {run.seed for run in runs if run.seed not in by_seed} - {None}
            seeds = [run.seed for run in runs]
            paired = [run for run in runs if run.seed in by_seed and seeds.count(run.seed) == 1]
            deltas = (last_scores(paired) - stopping).sort_index()
            pair_up(group, "stopping", deltas, panel["class_names"])
        if missing:
            panel["notes"].append(
                f"no run to continue from for seed(s) {sorted(missing)} among --continued-from: "
                "they have no Δ to stopping"
            )


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p in the order given (None, no test, stays None and does not count): the
    i-th smallest of m (from 0) becomes (m − i)·p, kept monotone by a running maximum, ≤ 1."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(tested):
        running = max(running, (len(tested) - rank) * p)
        adjusted[index] = min(1.0, running)
    return adjusted


def correct_panel(panel: dict[str, Any]) -> None:
    """Add ``p_holm`` to every paired test of ``panel``'s groups, each metric and comparison a
    family of its own."""
    for key in COMPARISONS:
        families: dict[str | None, list[dict[str, Any]]] = {None: []}
        for group in panel["groups"]:
            if group.get(key):
                families[None].append(group[key])
            for name, test in (group.get(f"per_class_{key}") or {}).items():
                families.setdefault(name, []).append(test)
        for tests in families.values():
            for test, adjusted in zip(tests, holm([t["p"] for t in tests]), strict=True):
                test["p_holm"] = adjusted
