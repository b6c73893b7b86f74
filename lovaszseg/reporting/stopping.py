"""What continuing gains over stopping: each run's last score against the last score of the run
it continued from (its seed's baseline), paired by seed.

The Δ to the control says whether a loss beats the same extra steps with the baseline's loss;
it cannot say whether either beats just keeping the baseline. A fresh optimizer can cost points
that the extra steps then win back, so the control may end below where the baseline stopped.
Both sides are the final validation, the weights a user keeps when the run ends; a run's best
epoch would be the maximum of several noisy scores, favoured against the one final score it
is compared with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from lovaszseg.reporting.aggregate import Report, paired_test
from lovaszseg.reporting.runs import Run
from lovaszseg.runs import contract


def last_score(run: Run, key: str) -> float | None:
    """The run's ``key`` (``val/mIoU``, ``val/IoU_road_thin``) at its last validation: the
    curve's last epoch, else results.json's ``final``."""
    curve = run.curves.get(key)
    if curve:
        return curve[max(curve)]
    final = (run.results or {}).get("final") or {}
    if key in final:
        return float(final[key])
    name = contract.class_of_iou_key(key)
    value = (final.get(contract.PER_CLASS_IOU) or {}).get(name) if name else None
    return None if value is None else float(value)


def stopped_by_seed(runs: Sequence[Run]) -> dict[int, Run]:
    """The finished runs continued from, by seed; raises ValueError for a seed given twice."""
    by_seed: dict[int, Run] = {}
    for run in runs:
        if not run.complete or run.seed is None:
            continue
        if run.seed in by_seed:
            raise ValueError(
                f"--continued-from: seed {run.seed} is run twice ({by_seed[run.seed].path} and "
                f"{run.path}); expected one run per seed to continue from"
            )
        by_seed[run.seed] = run
    if not by_seed:
        raise ValueError("--continued-from: no finished run with a seed to continue from")
    return by_seed


def compare_to_stopping(report: Report, stopped: Sequence[Run]) -> None:
    """Add ``paired_vs_stopping`` (the ranked metric) and ``per_class_paired_vs_stopping`` to
    every group of ``report``: the counted runs' last scores minus their seed's stopped run's."""
    by_seed = stopped_by_seed(stopped)
    for panel in report.panels:
        keys = {name: contract.class_iou_key(name) for name in panel["class_names"]}
        missing: set[int] = set()
        for group in panel["groups"]:
            runs = [report.runs[r["path"]] for r in group["runs"] if r["counted"]]
            missing |= {run.seed for run in runs if run.seed not in by_seed} - {None}
            seeds = [run.seed for run in runs]  # a seed repeated in a group pairs with nothing
            paired = [run for run in runs if run.seed in by_seed and seeds.count(run.seed) == 1]

            def gains(key: str, paired: list[Run] = paired) -> dict[str, Any] | None:
                deltas = {
                    run.seed: mine - theirs
                    for run in paired
                    if (mine := last_score(run, key)) is not None
                    and (theirs := last_score(by_seed[run.seed], key)) is not None
                }
                return paired_test(pd.Series(deltas, dtype=float).sort_index())

            group["paired_vs_stopping"] = gains(report.metric)
            group["per_class_paired_vs_stopping"] = {
                name: test for name, key in keys.items() if (test := gains(key))
            }
        if missing:
            panel["notes"].append(
                f"no run to continue from for seed(s) {sorted(missing)} among --continued-from: "
                "they have no Δ to stopping"
            )
