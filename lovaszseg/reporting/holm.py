"""Holm's correction of a report's paired p-values across the groups they compare.

A study compares several modes with one control, each with its own paired t-test; reading the
smallest of three p-values against 0.05 overstates the evidence. Holm–Bonferroni keeps the
chance of any false claim among them at 0.05 without assuming the tests independent (modes of
one seed share their starting checkpoint), and is uniformly more powerful than Bonferroni.
scipy's ``false_discovery_control`` is Benjamini–Hochberg, which controls another error rate.
Each family is one panel (one arm of a study), one comparison and one metric: corrections never
mix the restart and the continued arm, nor mIoU with a class's IoU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

COMPARISONS = ("paired_vs_baseline", "paired_vs_stopping")
"""The group keys holding paired tests (of the ranked metric); ``per_class_<key>`` holds the
same per class."""


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values, in the order given; None (no test) stays None and does not count.

    With m tests sorted by p, the i-th smallest (from 0) becomes (m − i)·p, then the running
    maximum keeps the adjusted values in the order of the raw ones, clipped at 1.
    """
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
