"""The numbers of a report: best score per run, mean and spread per group, Δ to the baseline.

With few seeds a single run has no spread (n/a, never 0), and Δ is also given in pooled seed
standard deviations so a gain is read against noise; the report is held as report.json's dict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lovaszseg.reporting import grouping
from lovaszseg.reporting.paired import pair_up
from lovaszseg.reporting.runs import Run
from lovaszseg.runs import contract

AUTO_BASELINE = {"binary": "bce", "multiclass": "ce"}
"""The plain cross-entropy PaddleSeg compares against."""
RUN_KEYS = "path loss seed status counted best best_epoch per_class_iou epochs last_third_gain"
SPREADS = ("last_third_gain", "best_epoch", "epochs", "wall_time_s")


@dataclass
class Report:
    summary: dict[str, Any]
    headings: list[str | None]
    """Each panel's title suffix (``data.difficulty=hard``); None for one unsplit panel."""
    runs: dict[str, Run]

    @property
    def metric(self) -> str:
        return self.summary["metric"]

    @property
    def panels(self) -> list[dict[str, Any]]:
        return self.summary["panels"]


def spread(values: pd.Series) -> dict[str, Any] | None:
    """n, mean, sample std (NaN for one value: None, shown n/a), min, max and the values."""
    present = pd.to_numeric(values.dropna())
    if present.empty:
        return None
    mean, std = present.agg(["mean", "std"]).tolist()
    v, std = present.tolist(), None if math.isnan(std) else std
    return dict(n=len(v), mean=mean, std=std, min=min(v), max=max(v), values=v)


def pooled_std(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    """Pooled sample standard deviation; None without a degree of freedom."""
    dof = a["n"] + b["n"] - 2
    squares = sum((s["n"] - 1) * s["std"] ** 2 for s in (a, b) if s["std"] is not None)
    return math.sqrt(squares / dof) if dof >= 1 else None


def difference(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float | None]:
    """Δ of the means, raw and in pooled seed standard deviations (None without spread)."""
    delta, pooled = a["mean"] - b["mean"], pooled_std(a, b)
    return delta, (delta / pooled if pooled else None)


def last_third_start(epochs: Sequence[int]) -> int | None:
    """Index of the first of the last ⌈E/3⌉ of E epochs; None below 3."""
    return len(epochs) - math.ceil(len(epochs) / 3) if len(epochs) >= 3 else None


def last_third_gain(curve: dict[int, float]) -> float | None:
    """How much the best value still rose over the last third: the evidence of a plateau."""
    epochs = sorted(curve)
    if (start := last_third_start(epochs)) is None:
        return None
    return max(curve.values()) - max(curve[e] for e in epochs[:start])


def iou_names(run: Run) -> tuple[str, ...]:
    """The run's classes, then any other IoU it logged (``road_thin``, ``road_wide``)."""
    classes = {contract.class_iou_key(name) for name in run.class_names}
    logged = (contract.class_of_iou_key(key) for key in run.curves if key not in classes)
    return (*run.class_names, *sorted(name for name in logged if name))


def score_run(run: Run, metric: str) -> dict[str, Any]:
    """Best ``metric`` from the curve, so finished or not every run is scored alike;
    results.json's ``best`` stands in when metrics.csv is missing."""
    record = {"path": str(run.path), "loss": run.loss, "seed": run.seed, "status": run.status}
    curve, results = run.curves.get(metric, {}), run.results or {}
    best, planned = results.get(contract.BEST) or {}, _int_or_none(results.get("epochs"))
    if not curve:
        iou = (best.get(contract.PER_CLASS_IOU) if metric == contract.VAL_MIOU else None) or {}
        value, epoch = best.get(metric), _int_or_none(best.get(contract.EPOCH))
        value = None if value is None else float(value)
        iou = {str(k): float(v) for k, v in iou.items() if v is not None}
        record |= dict(best=value, best_epoch=epoch, per_class_iou=iou, epochs=planned)
        return record | {"last_third_gain": None}
    epoch = max(curve, key=lambda e: (curve[e], -e))
    keys = {name: contract.class_iou_key(name) for name in iou_names(run)}
    iou = {
        name: run.curves[key][epoch]
        for name, key in keys.items()
        if epoch in run.curves.get(key, {})
    }
    record |= dict(best=curve[epoch], best_epoch=epoch, per_class_iou=iou)
    return record | dict(epochs=planned or max(curve) + 1, last_third_gain=last_third_gain(curve))


def summarise(
    runs: Sequence[Run],
    metric: str = contract.VAL_MIOU,
    baseline: str | None = None,
    by: str | None = None,
    include_incomplete: bool = False,
) -> Report:
    """Score, group, rank and compare ``runs`` in panels that are never pooled (data, metric
    definition, arm, ``--by``); with arms, ``baseline`` is each arm's own group of that loss."""
    # A run that failed before logging the metric (a refused config, missing data) trained
    # nothing to compare: it is named apart, not counted in any group or its setting notes.
    refused = [
        str(r.path) for r in runs if r.status == contract.FAILED and not r.curves.get(metric)
    ]
    runs = [run for run in runs if str(run.path) not in refused]
    if not runs:
        raise ValueError(
            "no runs to report on" + (" (every run failed before training)" if refused else "")
        )
    _check_metric_logged(runs, metric)
    labels, pool = grouping.loss_labels(runs), grouping.pools(runs)
    keys = {
        run.path: (pool[run.path] or "", grouping.setting_value(run, by) if by else None)
        for run in runs
    }
    panels, headings, baselines = [], [], set()
    for apart, value in sorted(set(keys.values()), key=lambda key: (key[0], str(key[1]))):
        members = [run for run in runs if keys[run.path] == (apart, value)]
        headings.append(" · ".join(p for p in (apart, f"{by}={value}" if by else "") if p) or None)
        frame = _scores(members, labels, metric, include_incomplete)
        arms = {grouping.arm_of(run) for run in members}
        arm = arms.pop() if grouping.several_arms(runs) and len(arms) == 1 else None
        named = baseline  # in a report of several arms, each arm's own control
        if baseline is not None and arm and baseline not in set(frame["label"]):
            named = grouping.with_arm(baseline, arm)
        baselines.add(named)
        by_value = " · ".join(p for p in (apart, value) if p) if apart else value
        panels.append(_panel(by_value, members, frame, named, by))
    known = sorted({g["label"] for p in panels for g in p["groups"]})
    if baseline is not None and not baselines & set(known):
        raise ValueError(f"--baseline {baseline!r}: no such loss group; the groups are {known}")
    incomplete = [str(r.path) for r in runs if not r.complete]
    summary = {"metric": metric, "by": by, "panels": panels, "incomplete_runs": incomplete}
    summary |= {"failed_before_training": refused} if refused else {}
    return Report(summary, headings, {str(r.path): r for r in runs})


def _scores(
    runs: list[Run], labels: dict[Path, str], metric: str, include_incomplete: bool
) -> pd.DataFrame:
    records = [
        score_run(run, metric)
        | {"label": labels[run.path], "task": run.task, "wall_time_s": _wall_time(run)}
        for run in runs
    ]
    frame = pd.DataFrame(records, dtype=object)
    finished = frame["status"].eq(contract.COMPLETED) | include_incomplete
    frame["counted"] = frame["best"].notna() & finished
    iou = pd.DataFrame(frame["per_class_iou"].tolist(), index=frame.index, dtype=object)
    return frame.join(iou.add_prefix("iou:"))


def _panel(
    by_value: str | None, runs: list[Run], frame: pd.DataFrame, baseline: str | None, by: str | None
) -> dict[str, Any]:
    groups = [_group(label, members) for label, members in frame.groupby("label", sort=False)]
    groups.sort(
        key=lambda g: (g["best"] is None, -(g["best"] or {"mean": 0.0})["mean"], g["label"])
    )
    counted = frame[frame["counted"] & frame["seed"].notna()]
    twice = counted[counted.duplicated(["label", "seed"])]
    notes = grouping.setting_caveats(runs, by) + [
        f"`{g['label']}` counts seed(s) {sorted(set(seeds))} more than once — the same run given "
        "twice, or repeats that are not independent seeds"
        for g in groups
        if len(seeds := twice.loc[twice["label"] == g["label"], "seed"])
    ]
    chosen, baseline_note = _pick_baseline(groups, frame, baseline)
    notes += [baseline_note] if baseline_note else []
    if chosen is not None:
        _compare_to_baseline(groups, chosen, frame[frame["counted"]])
    for rank, group in enumerate(groups, start=1):
        group["rank"] = rank if group["best"] else None
    return {
        "by_value": by_value,
        "baseline": chosen["label"] if chosen else None,
        "data": sorted({r.data for r in runs if r.data}),
        "model": sorted({r.model for r in runs if r.model}),
        "class_names": list(dict.fromkeys(n for run in runs for n in iou_names(run))),
        "notes": notes,
        "groups": groups,
    }


def _group(label: str, members: pd.DataFrame) -> dict[str, Any]:
    counted = members[members["counted"]]
    names = dict.fromkeys(name for iou in counted["per_class_iou"] for name in iou)
    runs = pd.concat([counted, members[~members["counted"]]])[RUN_KEYS.split()]
    return {
        "rank": None,
        "label": label,
        "is_baseline": False,
        "n": len(counted),
        "n_incomplete_left_out": len(members) - len(counted),
        "best": spread(counted["best"]),
        "delta_vs_baseline": None,
        "delta_in_pooled_std": None,
        "per_class_iou": {n: s for n in names if (s := spread(counted[f"iou:{n}"]))},
        "per_class_delta_vs_baseline": {},
        "paired_vs_baseline": None,
        "per_class_paired_vs_baseline": {},
        **{key: spread(counted[key]) for key in SPREADS},
        "runs": [dict(row, counted=bool(row["counted"])) for row in runs.to_dict("records")],
    }


def _pick_baseline(
    groups: list[dict[str, Any]], frame: pd.DataFrame, name: str | None
) -> tuple[dict[str, Any] | None, str | None]:
    if name is None and len(tasks := set(frame["task"])) == 1:
        name = AUTO_BASELINE.get(tasks.pop())
    if name is None:
        return None, "mixed or unknown tasks: no automatic baseline (name one with --baseline)"
    chosen = next((g for g in groups if g["label"] == name), None)
    if chosen is None:
        return (
            None,
            f"no `{name}` runs here, so there is no Δ to the baseline (name one with --baseline)",
        )
    if chosen["best"] is None:
        return None, f"`{name}` has no finished runs, so there is no Δ to the baseline"
    return chosen, None


def _compare_to_baseline(
    groups: list[dict[str, Any]], baseline: dict[str, Any], counted: pd.DataFrame
) -> None:
    """Δ of the means, and per seed (a repeated or unknown seed is no pair)."""
    baseline["is_baseline"] = True
    once = counted[counted["seed"].notna() & ~counted.duplicated(["label", "seed"], keep=False)]
    columns = ["best", *(column for column in counted if column.startswith("iou:"))]
    by_seed = {label: rows.set_index("seed")[columns] for label, rows in once.groupby("label")}
    control = by_seed.get(baseline["label"])
    for group in (g for g in groups if g["best"] is not None):
        group["delta_vs_baseline"], group["delta_in_pooled_std"] = difference(
            group["best"], baseline["best"]
        )
        group["per_class_delta_vs_baseline"] = {
            name: dict(zip(("delta", "delta_in_pooled_std"), difference(iou, base), strict=True))
            for name, iou in group["per_class_iou"].items()
            if (base := baseline["per_class_iou"].get(name))
        }
        if group is not baseline and group["label"] in by_seed and control is not None:
            pair_up(group, "baseline", by_seed[group["label"]], control, group["per_class_iou"])


def _check_metric_logged(runs: Sequence[Run], metric: str) -> None:
    """A misspelt ``--metric`` fails loudly rather than giving a report of n/a."""
    logged = {name for run in runs for name in run.curves}
    summarised = {k for run in runs for k in ((run.results or {}).get(contract.BEST) or {})}
    if metric not in logged | summarised:
        where = sorted({str(run.path.parent) for run in runs})[:3]
        raise ValueError(
            f"--metric {metric!r}: no run under {', '.join(where)} logged it; "
            f"logged: {sorted(name for name in logged if name.startswith('val/'))}"
        )


def _wall_time(run: Run) -> float | None:
    value = (run.results or {}).get("wall_time_s")
    return float(value) if isinstance(value, int | float) else None


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
