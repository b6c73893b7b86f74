"""Comparisons paired by seed (the t-test, continuing vs stopping) and Holm's correction.

Where modes continue from their seed's checkpoint, what the seeds share cancels in the per-seed
difference, so a paired test sees effects the groups' spread hides. Continuing is paired with
stopping on last scores (the weights a user keeps): a best epoch, the maximum of several noisy
scores, would be favoured against one final score. Holm (not scipy's Benjamini–Hochberg) bounds
the chance of any false claim without assuming the modes' tests independent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
from scipy import stats

from lovaszseg.reporting.runs import Run
from lovaszseg.runs import contract

if TYPE_CHECKING:
    from lovaszseg.reporting.aggregate import Report

COMPARISONS = ("paired_vs_baseline", "paired_vs_stopping")


def paired_test(after: pd.Series, before: pd.Series) -> dict[str, Any] | None:
    """Per-seed differences and ``ttest_rel``; no t or p below two pairs or for constant ones."""
    pairs = pd.concat([after, before], axis=1).astype(float).dropna().sort_index()
    if pairs.empty:
        return None
    deltas = pairs.iloc[:, 0] - pairs.iloc[:, 1]
    t = p = None
    if deltas.nunique() > 1:
        test = stats.ttest_rel(pairs.iloc[:, 0], pairs.iloc[:, 1])
        t, p = float(test.statistic), float(test.pvalue)
    seeds = [int(seed) for seed in deltas.index]
    mean = float(deltas.mean())
    return {
        "n": len(deltas),
        "seeds": seeds,
        "deltas": deltas.tolist(),
        "mean": mean,
        "t": t,
        "p": p,
    }


def critical_t(pairs: int, alpha: float = 0.05) -> float:
    """The |t| that ``pairs`` seeds need for two-sided p < ``alpha``."""
    if pairs < 2:
        raise ValueError(f"critical_t needs at least 2 pairs, got {pairs}")
    return float(stats.t.ppf(1.0 - alpha / 2.0, pairs - 1))


def last_score(run: Run, key: str) -> float | None:
    """``key`` at the run's last validation: the curve's last epoch, else results.json's final."""
    if curve := run.curves.get(key):
        return curve[max(curve)]
    final = (run.results or {}).get("final") or {}
    name = contract.class_of_iou_key(key)
    value = final.get(key, (final.get(contract.PER_CLASS_IOU) or {}).get(name) if name else None)
    return None if value is None else float(value)


def stopped_by_seed(runs: Sequence[Run]) -> dict[int, Run]:
    """The finished runs continued from, by seed; a seed given twice is ambiguous."""
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
    group: dict[str, Any],
    against: str,
    after: pd.DataFrame,
    before: pd.DataFrame,
    names: Iterable[str],
) -> None:
    """``paired_vs_<against>`` from the ``best`` column, its per-class twin from ``iou:<class>``."""
    group[f"paired_vs_{against}"] = paired_test(after["best"], before["best"])
    group[f"per_class_paired_vs_{against}"] = {
        name: test
        for name in names
        if f"iou:{name}" in after
        and (test := paired_test(after[f"iou:{name}"], before[f"iou:{name}"]))
    }


def compare_to_stopping(report: Report, stopped: Sequence[Run]) -> None:
    """Each group's last scores paired with its seed's stopped run (a repeated seed with none)."""
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
            pair_up(group, "stopping", last_scores(paired), stopping, panel["class_names"])
        if missing:
            panel["notes"].append(
                f"no run to continue from for seed(s) {sorted(missing)} among --continued-from: "
                "they have no Δ to stopping"
            )


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p in the given order; None (no test) stays None and does not count."""
    tested = pd.Series(p_values, dtype=float).dropna().sort_values(kind="stable")
    adjusted = (tested * range(len(tested), 0, -1)).cummax().clip(upper=1.0)
    return [None if pd.isna(p) else float(p) for p in adjusted.reindex(range(len(p_values)))]


def correct_panel(panel: dict[str, Any]) -> None:
    """``p_holm`` for every paired test; each comparison and metric is a family of its own."""
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
