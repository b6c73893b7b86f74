"""The report as JSON: the numbers of report.md, unformatted, for scripts and dashboards.

Scores stay fractions in [0, 1] as logged; a spread without a standard deviation (one seed)
has ``"std": null``.
"""

from __future__ import annotations

from typing import Any

from lovaszseg.reporting.aggregate import GroupSummary, Paired, Panel, Report, RunScore, Spread


def report_to_dict(report: Report) -> dict[str, Any]:
    return {
        "metric": report.metric,
        "by": report.by,
        "panels": [_panel(p) for p in report.panels],
        "incomplete_runs": [str(run.path) for run in report.incomplete],
    }


def spread_to_dict(spread: Spread | None) -> dict[str, Any] | None:
    if spread is None:
        return None
    return {
        "n": spread.n,
        "mean": spread.mean,
        "std": spread.std,
        "min": spread.min,
        "max": spread.max,
        "values": list(spread.values),
    }


def paired_to_dict(paired: Paired | None) -> dict[str, Any] | None:
    if paired is None:
        return None
    return {
        "n": paired.n,
        "seeds": list(paired.seeds),
        "deltas": list(paired.deltas),
        "mean": paired.mean,
        "t": paired.t,
        "p": paired.p,
    }


def _panel(panel: Panel) -> dict[str, Any]:
    return {
        "by_value": panel.by_value,
        "baseline": panel.baseline,
        "data": panel.data,
        "model": panel.model,
        "class_names": list(panel.class_names),
        "notes": panel.notes,
        "groups": [_group(rank, g) for rank, g in enumerate(panel.groups, start=1)],
    }


def _group(rank: int, group: GroupSummary) -> dict[str, Any]:
    return {
        "rank": rank if group.best else None,
        "label": group.label,
        "is_baseline": group.is_baseline,
        "n": len(group.scores),
        "n_incomplete_left_out": len(group.left_out),
        "best": spread_to_dict(group.best),
        "delta_vs_baseline": group.delta,
        "delta_in_pooled_std": group.delta_in_std,
        "per_class_iou": {name: spread_to_dict(s) for name, s in group.per_class.items()},
        "per_class_delta_vs_baseline": {
            name: {"delta": delta, "delta_in_pooled_std": in_std}
            for name, (delta, in_std) in group.per_class_delta.items()
        },
        "paired_vs_baseline": paired_to_dict(group.paired),
        "per_class_paired_vs_baseline": {
            name: paired_to_dict(p) for name, p in group.paired_per_class.items()
        },
        "last_third_gain": spread_to_dict(group.last_third_gain),
        "best_epoch": spread_to_dict(group.best_epoch),
        "epochs": spread_to_dict(group.epochs),
        "wall_time_s": spread_to_dict(group.wall_time_s),
        "runs": [_run(s, counted=True) for s in group.scores]
        + [_run(s, counted=False) for s in group.left_out],
    }


def _run(score: RunScore, counted: bool) -> dict[str, Any]:
    run = score.run
    return {
        "path": str(run.path),
        "loss": run.loss,
        "seed": run.seed,
        "status": run.status,
        "counted": counted,
        "best": score.best,
        "best_epoch": score.best_epoch,
        "per_class_iou": score.per_class,
        "epochs": score.epochs,
        "last_third_gain": score.last_third_gain,
    }
