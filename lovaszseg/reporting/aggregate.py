"""The numbers of a report: best score per run, mean and spread per group, Δ to the baseline.

Honest statistics with few seeds: the standard deviation is the sample one (ddof=1) and is
``None`` — shown as n/a — for a single run, never 0; the difference to the baseline is also
given in units of the pooled seed standard deviation, so a +0.3 gain is read against noise.
Incomplete runs are listed but left out of the statistics unless asked for. Per-class IoU gets
the same Δ and Δ/σ, since what an IoU loss changes may show in some classes only (thin roads, small
objects); and each group says how much its best score still rose over the last third of its
epochs, the evidence that it reached its plateau. Runs of the same seed are also compared in
pairs (`Paired`): where every mode continues from its seed's baseline checkpoint, the spread
between seeds is shared by a mode and its control and cancels in their difference.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lovaszseg.reporting.grouping import loss_labels, setting_caveats, setting_value
from lovaszseg.reporting.runs import Run

IOU_PREFIX = "val/IoU_"
"""Per-class IoU columns of metrics.csv; any other ``val/IoU_<name>`` (``road_thin``) rides along."""

AUTO_BASELINE = {"binary": "bce", "multiclass": "ce"}
"""Baseline per task when none is named: the plain cross-entropy PaddleSeg compares against."""


@dataclass(frozen=True)
class Spread:
    """Mean and spread of one quantity over seeds; ``std`` is None for fewer than two values."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return math.fsum(self.values) / self.n

    @property
    def std(self) -> float | None:
        if self.n < 2:
            return None
        mean = self.mean
        return math.sqrt(math.fsum((v - mean) ** 2 for v in self.values) / (self.n - 1))

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def max(self) -> float:
        return max(self.values)


def spread(values: Iterable[float | None]) -> Spread | None:
    """Spread of the values that exist; None when there are none."""
    present = tuple(v for v in values if v is not None)
    return Spread(present) if present else None


@dataclass(frozen=True)
class Paired:
    """A group's differences to the baseline's run of the same seed, and their paired t-test.

    ``t`` and ``p`` (two-sided) are None below two pairs or when the differences do not vary.
    """

    seeds: tuple[int, ...]
    deltas: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.deltas)

    @property
    def mean(self) -> float:
        return Spread(self.deltas).mean

    @property
    def t(self) -> float | None:
        std = Spread(self.deltas).std
        return self.mean / (std / math.sqrt(self.n)) if std else None

    @property
    def p(self) -> float | None:
        t = self.t
        if t is None:
            return None
        from scipy.stats import t as student_t  # scipy.stats takes ~0.5 s to import

        return float(2.0 * student_t.sf(abs(t), self.n - 1))


def critical_t(pairs: int, alpha: float = 0.05) -> float:
    """The |t| a paired t-test over ``pairs`` seeds must pass for two-sided p < ``alpha``."""
    if pairs < 2:
        raise ValueError(f"critical_t needs at least 2 pairs, got {pairs}")
    from scipy.stats import t as student_t

    return float(student_t.isf(alpha / 2.0, pairs - 1))


def pair_by_seed(
    scores: Sequence[RunScore],
    baseline: Sequence[RunScore],
    value: Callable[[RunScore], float | None],
) -> Paired | None:
    """``value`` of each run minus that of the baseline's run with the same seed; seeds that
    are missing, repeated (not independent) or unknown on either side are left out."""
    own, base = _one_per_seed(scores), _one_per_seed(baseline)
    pairs = [
        (seed, a - b)
        for seed in sorted(own.keys() & base.keys())
        if (a := value(own[seed])) is not None and (b := value(base[seed])) is not None
    ]
    if not pairs:
        return None
    seeds, deltas = zip(*pairs, strict=True)
    return Paired(seeds, deltas)


def _one_per_seed(scores: Sequence[RunScore]) -> dict[int, RunScore]:
    counts = Counter(s.run.seed for s in scores)
    return {s.run.seed: s for s in scores if s.run.seed is not None and counts[s.run.seed] == 1}


@dataclass(frozen=True)
class RunScore:
    """A run's best value of the metric, the epoch it came at, and the per-class IoU there."""

    run: Run
    best: float | None
    best_epoch: int | None
    per_class: dict[str, float]
    epochs: int | None
    last_third_gain: float | None = None
    """Best score over all epochs minus the best before the last third (None: < 3 epochs)."""

    @property
    def counted(self) -> bool:
        return self.best is not None


@dataclass
class GroupSummary:
    label: str
    scores: list[RunScore]
    """Runs whose numbers enter the statistics."""
    left_out: list[RunScore]
    """Incomplete runs, listed but not counted."""
    best: Spread | None = None
    per_class: dict[str, Spread] = field(default_factory=dict)
    per_class_delta: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    """Per class: Δ of the mean IoU to the baseline's, and Δ in pooled seed std (None: no dof)."""
    paired: Paired | None = None
    """The best score's differences to the baseline's run of the same seed."""
    paired_per_class: dict[str, Paired] = field(default_factory=dict)
    last_third_gain: Spread | None = None
    best_epoch: Spread | None = None
    epochs: Spread | None = None
    wall_time_s: Spread | None = None
    delta: float | None = None
    delta_in_std: float | None = None
    is_baseline: bool = False

    @property
    def seeds(self) -> list[int | None]:
        return [s.run.seed for s in self.scores]


@dataclass
class Panel:
    """The groups ranked against each other: all runs, or those sharing one ``--by`` value."""

    by_value: str | None
    heading: str | None
    """``KEY=value`` of the panel's ``--by`` setting, for titles; None without ``--by``."""
    groups: list[GroupSummary]
    class_names: tuple[str, ...]
    baseline: str | None
    notes: list[str]
    data: list[str]
    model: list[str]


@dataclass
class Report:
    metric: str
    by: str | None
    panels: list[Panel]
    incomplete: list[Run]


def score_run(run: Run, metric: str) -> RunScore:
    """Best value of ``metric`` over the run's epochs (higher is better).

    The curve in metrics.csv is the source, so every run — finished or not — is scored the same
    way; results.json's ``best`` stands in when metrics.csv is missing.
    """
    curve = run.curves.get(metric, {})
    epochs = _int_or_none((run.results or {}).get("epochs"))
    if curve:
        best_epoch = max(curve, key=lambda e: (curve[e], -e))
        per_class = {
            name: run.curves[f"{IOU_PREFIX}{name}"][best_epoch]
            for name in iou_names(run)
            if best_epoch in run.curves.get(f"{IOU_PREFIX}{name}", {})
        }
        return RunScore(
            run,
            curve[best_epoch],
            best_epoch,
            per_class,
            epochs or max(curve) + 1,
            last_third_gain(curve),
        )
    best = (run.results or {}).get("best") or {}
    value = best.get(metric)
    per_class = best.get("per_class_iou") if metric == "val/mIoU" else None
    return RunScore(
        run,
        float(value) if value is not None else None,
        _int_or_none(best.get("epoch")),
        {str(k): float(v) for k, v in (per_class or {}).items() if v is not None},
        epochs,
    )


def iou_names(run: Run) -> tuple[str, ...]:
    """The run's classes, then any other IoU it logged (``road_thin``, ``road_wide``)."""
    extra = sorted(
        name.removeprefix(IOU_PREFIX)
        for name in run.curves
        if name.startswith(IOU_PREFIX) and name.removeprefix(IOU_PREFIX) not in run.class_names
    )
    return (*run.class_names, *extra)


def last_third_start(epochs: Sequence[int]) -> int | None:
    """Where the last third of the sorted logged ``epochs`` begins: with E of them, the index of
    the first of the last ⌈E/3⌉; None below 3 epochs (no last third)."""
    return len(epochs) - math.ceil(len(epochs) / 3) if len(epochs) >= 3 else None


def last_third_gain(curve: dict[int, float]) -> float | None:
    """How much the best value rose over the last third of the epochs logged (≥ 0)."""
    epochs = sorted(curve)
    start = last_third_start(epochs)
    if start is None:
        return None
    return max(curve.values()) - max(curve[e] for e in epochs[:start])


def summarise(
    runs: Sequence[Run],
    metric: str = "val/mIoU",
    baseline: str | None = None,
    by: str | None = None,
    include_incomplete: bool = False,
) -> Report:
    """Score, group, rank and compare ``runs``; raises ValueError for an unknown baseline."""
    if not runs:
        raise ValueError("no runs to report on")
    _check_metric_logged(runs, metric)
    labels = loss_labels(runs)
    panels_runs: dict[str | None, list[Run]] = defaultdict(list)
    for run in runs:
        panels_runs[setting_value(run, by) if by else None].append(run)
    panels = [
        _panel(value, members, labels, metric, baseline, by, include_incomplete)
        for value, members in sorted(panels_runs.items(), key=lambda item: str(item[0]))
    ]
    known = sorted({g.label for p in panels for g in p.groups})
    if baseline is not None and baseline not in known:
        raise ValueError(f"--baseline {baseline!r}: no such loss group; the groups are {known}")
    return Report(metric, by, panels, [r for r in runs if not r.complete])


def _check_metric_logged(runs: Sequence[Run], metric: str) -> None:
    """A misspelt ``--metric`` must fail loudly, not produce a report of n/a."""
    logged = {name for run in runs for name in run.curves}
    summarised = {k for run in runs for k in ((run.results or {}).get("best") or {})}
    if metric not in logged | summarised:
        where = sorted({str(run.path.parent) for run in runs})[:3]
        raise ValueError(
            f"--metric {metric!r}: no run under {', '.join(where)} logged it; "
            f"logged: {sorted(name for name in logged if name.startswith('val/'))}"
        )


def _panel(
    by_value: str | None,
    runs: list[Run],
    labels: dict[Path, str],
    metric: str,
    baseline: str | None,
    by: str | None,
    include_incomplete: bool,
) -> Panel:
    members: dict[str, list[RunScore]] = defaultdict(list)
    for run in runs:
        members[labels[run.path]].append(score_run(run, metric))
    groups = [_group(label, scores, include_incomplete) for label, scores in members.items()]
    groups.sort(key=lambda g: (g.best is None, -(g.best.mean if g.best else 0.0), g.label))
    notes = setting_caveats(runs, by)
    notes += _duplicate_seed_notes(groups)
    chosen, baseline_note = _pick_baseline(groups, baseline)
    if baseline_note:
        notes.append(baseline_note)
    _compare_to_baseline(groups, chosen)
    return Panel(
        by_value=by_value,
        heading=f"{by}={by_value}" if by else None,
        groups=groups,
        class_names=_class_names(runs),
        baseline=chosen.label if chosen else None,
        notes=notes,
        data=sorted({r.data for r in runs if r.data}),
        model=sorted({r.model for r in runs if r.model}),
    )


def _group(label: str, scores: list[RunScore], include_incomplete: bool) -> GroupSummary:
    counts = [s.counted and (s.run.complete or include_incomplete) for s in scores]
    group = GroupSummary(
        label,
        scores=[s for s, c in zip(scores, counts, strict=True) if c],
        left_out=[s for s, c in zip(scores, counts, strict=True) if not c],
    )
    counted = group.scores
    group.best = spread(s.best for s in counted)
    group.best_epoch = spread(s.best_epoch for s in counted)
    group.last_third_gain = spread(s.last_third_gain for s in counted)
    group.epochs = spread(s.epochs for s in counted)
    group.wall_time_s = spread(_wall_time(s.run) for s in counted)
    names = dict.fromkeys(name for s in counted for name in s.per_class)
    group.per_class = {n: sp for n in names if (sp := spread(s.per_class.get(n) for s in counted))}
    return group


def _pick_baseline(
    groups: list[GroupSummary], requested: str | None
) -> tuple[GroupSummary | None, str | None]:
    by_label = {g.label: g for g in groups}
    if requested is not None:
        name = requested
    else:
        tasks = {s.run.task for g in groups for s in g.scores + g.left_out}
        name = AUTO_BASELINE.get(tasks.pop()) if len(tasks) == 1 else None
        if name is None:
            return None, "mixed or unknown tasks: no automatic baseline (name one with --baseline)"
    if name in by_label:
        if by_label[name].best is None:
            return None, f"`{name}` has no finished runs, so there is no Δ to the baseline"
        return by_label[name], None
    return (
        None,
        f"no `{name}` runs here, so there is no Δ to the baseline (name one with --baseline)",
    )


def _compare_to_baseline(groups: list[GroupSummary], baseline: GroupSummary | None) -> None:
    """Δ of each group's mean to the baseline's, raw and in pooled seed standard deviations,
    and per seed, paired with the baseline's run of that seed."""
    if baseline is None:
        return
    baseline.is_baseline = True
    reference = baseline.best
    for group in groups:
        if group.best is None:
            continue
        group.delta, group.delta_in_std = difference(group.best, reference)
        group.per_class_delta = {
            name: difference(iou, baseline.per_class[name])
            for name, iou in group.per_class.items()
            if name in baseline.per_class
        }
        if group is baseline:
            continue
        group.paired = pair_by_seed(group.scores, baseline.scores, lambda s: s.best)
        group.paired_per_class = {
            name: paired
            for name in group.per_class
            if (paired := pair_by_seed(group.scores, baseline.scores, _class_iou(name)))
        }


def _class_iou(name: str) -> Callable[[RunScore], float | None]:
    return lambda score: score.per_class.get(name)


def difference(a: Spread, b: Spread) -> tuple[float, float | None]:
    """Δ of the means, raw and in pooled seed standard deviations (None without spread)."""
    delta = a.mean - b.mean
    pooled = pooled_std(a, b)
    return delta, (delta / pooled if pooled else None)


def pooled_std(a: Spread, b: Spread) -> float | None:
    """Pooled sample standard deviation of two groups; None without a degree of freedom."""
    dof = a.n + b.n - 2
    if dof < 1:
        return None
    squares = sum((s.n - 1) * s.std**2 for s in (a, b) if s.std is not None)
    return math.sqrt(squares / dof)


def _duplicate_seed_notes(groups: list[GroupSummary]) -> list[str]:
    notes = []
    for group in groups:
        twice = sorted(s for s, n in Counter(group.seeds).items() if n > 1 and s is not None)
        if twice:
            notes.append(
                f"`{group.label}` counts seed(s) {twice} more than once — the same run given "
                "twice, or repeats that are not independent seeds"
            )
    return notes


def _class_names(runs: list[Run]) -> tuple[str, ...]:
    names = dict.fromkeys(name for run in runs for name in iou_names(run))
    return tuple(names)


def _wall_time(run: Run) -> float | None:
    value = (run.results or {}).get("wall_time_s")
    return float(value) if isinstance(value, int | float) else None


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
