"""The report's tables as DataFrames of formatted cells: a Markdown document, or rich tables.

The document is pasted into an experiment README as it stands, so it says how to read Δ/σ against
seed noise; a missing spread reads "n/a": one seed has no standard deviation, not a zero one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich import box
from rich.table import Table as RichTable

from lovaszseg.reporting.aggregate import Report
from lovaszseg.reporting.paired import critical_t
from lovaszseg.runs import contract

MAX_CLASS_COLUMNS = 5
"""Beyond this many classes, per-class IoU has its own table."""
NA = "n/a"
STOPPING = "at the last epoch vs stopping"
FAILED_BEFORE_TRAINING = "Left out, failed before training (a refused config, missing data)"

READING_GUIDE = (
    "Each run is scored by its best `{metric}` over its epochs. Groups show mean ± sample "
    "standard deviation over the n seeds counted (n/a with one seed), in %; (+k) are "
    "incomplete runs left out; epochs count from 0, as Lightning logs them. "
    "Δ is the difference of the means "
    "to the baseline in percentage points; Δ/σ divides it by the pooled seed standard deviation. "
    "Rough guide: with 3 seeds per group |Δ/σ| below ≈ 2.3 is within seed noise (two-sided "
    "t-test at 5 %, 4 degrees of freedom); with 5 seeds, below ≈ 1.5. "
    "The gain over the last third is how much the best score still rose in the last ⌈E/3⌉ of "
    "E epochs: below 1 pp, the run has reached its plateau."
)
STOPPING_GUIDE = (
    "Each run's last validation score minus the last score of its seed's run that it continued "
    "from (`--continued-from`): what continuing gains over just stopping there."
)
HOLM_GUIDE = (
    "p (Holm) corrects p for the comparisons in this table (Holm–Bonferroni, each metric of "
    "each panel on its own): read the verdict from it."
)


@dataclass(frozen=True)
class Table:
    title: str
    cells: pd.DataFrame
    label_column: int = 1
    """The column of names; the others hold numbers."""
    guide: str | None = None


def render_markdown(
    report: Report, sources: Sequence[Path], figure_name: str, searches: Sequence[dict[str, Any]]
) -> str:
    runs = sum(len(g["runs"]) for p in report.panels for g in p["groups"])
    by = report.summary["by"]
    lines = [
        f"# {report.metric}: {subject(report)}",
        "",
        f"{runs} runs ({len(report.summary['incomplete_runs'])} incomplete) from "
        + ", ".join(f"`{s}`" for s in sources)
        + (f", compared separately for each `{by}`." if by else "."),
        "",
        READING_GUIDE.format(metric=report.metric),
        "",
        f"![{report.metric} per epoch]({figure_name})",
    ]
    for panel, heading in zip(report.panels, report.headings, strict=True):
        for level, table in enumerate(panel_tables(panel, heading, report.metric)):
            lines += ["", f"{'###' if level else '##'} {table.title}", ""]
            lines += [table.guide, ""] if table.guide else []
            lines.append(to_markdown(table))
        lines += ["", *(f"- {note}" for note in panel["notes"])] if panel["notes"] else []
    if report.summary["incomplete_runs"]:
        table = incomplete_table(report)
        lines += ["", f"## {table.title}", "", to_markdown(table)]
    if refused := report.summary.get("failed_before_training"):
        lines += ["", f"{FAILED_BEFORE_TRAINING}:", "", *(f"- `{path}`" for path in refused)]
    if searches:
        lines += ["", "## Optuna searches", "", *(f"- {describe(s)}" for s in searches)]
    return "\n".join(lines) + "\n"


def subject(report: Report) -> str:
    data = sorted({d for p in report.panels for d in p["data"]}) or ["unknown data"]
    model = sorted({m for p in report.panels for m in p["model"]}) or ["unknown model"]
    return f"{', '.join(data)} · {', '.join(model)}"


def describe(search: dict[str, Any]) -> str:
    params = ", ".join(
        f"`{key}={value:.4g}`" if isinstance(value, float) else f"`{key}={value}`"
        for key, value in search["best_params"].items()
    )
    where = Path(search["best_job"]).name if search["best_job"] else "job folder not found"
    return (
        f"`{search['sweep']}`: {search['trials']} trials, best value "
        f"{search['best_value']:.4f} with {params} ({where})"
    )


def panel_tables(panel: dict[str, Any], heading: str | None, metric: str) -> list[Table]:
    suffix = f" — {heading}" if heading else ""
    groups, base, classes = panel["groups"], panel["baseline"], panel["class_names"]
    scored = [g for g in groups if g["best"]]
    compared = [g for g in scored if not g["is_baseline"] and g["per_class_delta_vs_baseline"]]
    apart = scored if len(classes) > MAX_CLASS_COLUMNS else []
    tables = [
        ranking_table(panel, metric, suffix),
        _by_class("Per-class IoU (%)" + suffix, classes, apart, _iou),
        _by_class(f"Per-class IoU Δ vs {base} (pp, Δ/σ){suffix}", classes, compared, _delta),
    ]
    for against, versus in (("baseline", f"vs {base}"), ("stopping", STOPPING)):
        tables += [paired_table(panel, metric, versus, against, suffix)]
        tables.append(_paired_by_class(panel, versus, against, suffix))
    return [table for table in tables if table is not None]


def ranking_table(panel: dict[str, Any], metric: str, suffix: str) -> Table:
    classes = panel["class_names"] if len(panel["class_names"]) <= MAX_CLASS_COLUMNS else []
    rows = [
        {
            "#": str(g["rank"] or "–"),
            "loss": g["label"],
            "n": f"{g['n']} (+{left})" if (left := g["n_incomplete_left_out"]) else str(g["n"]),
            f"best {metric} (%)": mean_std(g["best"]),
            f"Δ vs {panel['baseline'] or 'baseline'} (pp)": "baseline"
            if g["is_baseline"]
            else signed(g["delta_vs_baseline"], 100.0, 2),
            "Δ/σ": "–" if g["is_baseline"] else signed(g["delta_in_pooled_std"], 1.0, 1),
            **{f"IoU {n} (%)": mean_std(g["per_class_iou"].get(n)) for n in classes},
            "best epoch": value_range(g["best_epoch"]),
            "epochs": value_range(g["epochs"]),
            "gain over last ⅓ (pp)": mean_std(g["last_third_gain"]),
            "time / run": duration(g["wall_time_s"]["mean"] if g["wall_time_s"] else None),
        }
        for g in panel["groups"]
    ]
    return Table(f"Best {metric}{suffix}", pd.DataFrame(rows))


def paired_table(
    panel: dict[str, Any], metric: str, versus: str, against: str, suffix: str
) -> Table | None:
    """Each group paired by seed with the baseline or with stopping; None when none pairs up."""
    paired = [(g["label"], t) for g in panel["groups"] if (t := g.get(f"paired_vs_{against}"))]
    if not paired:
        return None
    rows = [
        {
            "loss": label,
            "seeds": " / ".join(str(seed) for seed in test["seeds"]),
            f"Δ {metric} per seed (pp)": " / ".join(signed(d, 100.0, 2) for d in test["deltas"]),
            "mean Δ (pp)": signed(test["mean"], 100.0, 2),
            "paired t": signed(test["t"], 1.0, 2),
            "p": p_value(test["p"]),
            **({"p (Holm)": p_value(test["p_holm"])} if "p_holm" in test else {}),
        }
        for label, test in paired
    ]
    guide = paired_guide(test["n"] for _, test in paired)
    guide = f"{STOPPING_GUIDE} {guide}" if against == "stopping" else guide
    guide += " " + HOLM_GUIDE if any("p_holm" in test for _, test in paired) else ""
    title = f"Paired by seed: Δ {metric} {versus}{suffix}"
    return Table(title, pd.DataFrame(rows), label_column=0, guide=guide)


def paired_guide(pairs: Iterable[int]) -> str:
    counts = sorted({n for n in pairs if n >= 2})
    thresholds = ", ".join(f"|t| > {critical_t(n):.2f} with {n} seeds" for n in counts)
    return (
        "Each run is paired with the baseline's run of the same seed. Where every run of a seed "
        "starts from the same checkpoint (the finetune design), what the seeds share cancels in "
        "the difference, so the paired t-test (n − 1 degrees of freedom, two-sided p) can see "
        "effects the Δ/σ above cannot"
        + (f"; p < 0.05 needs {thresholds}" if thresholds else "")
        + ". Across many classes, about 1 comparison in 20 falls below p 0.05 by chance alone."
    )


def _paired_by_class(panel: dict[str, Any], versus: str, against: str, suffix: str) -> Table | None:
    key = f"per_class_paired_vs_{against}"
    groups = [g for g in panel["groups"] if g.get(key)]
    holm = "; Holm p" if any("p_holm" in test for g in groups for test in g[key].values()) else ""
    title = f"Paired by seed: per-class IoU Δ {versus} (pp; paired t, p{holm}){suffix}"
    return _by_class(title, panel["class_names"], groups, lambda g, n: _paired(g[key].get(n)))


def incomplete_table(report: Report) -> Table:
    rows = [
        {
            "run": run["path"],
            "loss": group["label"],
            "seed": str(run["seed"]),
            "status": run["status"],
            "epochs logged": str(len(report.runs[run["path"]].curves.get(report.metric, {}))),
            "best so far (%)": NA if run["best"] is None else f"{100.0 * run['best']:.2f}",
            "counted": "yes" if run["counted"] else "no",
        }
        for panel in report.panels
        for group in panel["groups"]
        for run in group["runs"]
        if run["status"] != contract.COMPLETED
    ]
    return Table("Incomplete runs", pd.DataFrame(rows), label_column=0)


def _by_class(
    title: str, classes: list[str], groups: list[dict], cell: Callable[[dict, str], str]
) -> Table | None:
    """Classes down, ``groups`` across; None without groups."""
    if not groups:
        return None
    rows = [{"class": n, **{g["label"]: cell(g, n) for g in groups}} for n in classes]
    return Table(title, pd.DataFrame(rows), label_column=0)


def _iou(group: dict[str, Any], name: str) -> str:
    return mean_std(group["per_class_iou"].get(name))


def _delta(group: dict[str, Any], name: str) -> str:
    if (delta := group["per_class_delta_vs_baseline"].get(name)) is None:
        return NA
    in_std = delta["delta_in_pooled_std"]
    return f"{signed(delta['delta'], 100.0, 2)} ({NA if in_std is None else f'{in_std:+.1f}σ'})"


def _paired(paired: dict[str, Any] | None) -> str:
    if paired is None:
        return NA
    mean, t = signed(paired["mean"], 100.0, 2), signed(paired["t"], 1.0, 1)
    holm = f"; {p_value(paired['p_holm'])}" if "p_holm" in paired else ""
    return f"{mean} ({t}, {p_value(paired['p'])}{holm})"


def to_markdown(table: Table) -> str:
    align = ["left" if i == table.label_column else "right" for i in range(table.cells.shape[1])]
    cells = table.cells.map(lambda cell: cell.replace("|", r"\|"))
    return cells.to_markdown(index=False, disable_numparse=True, colalign=align)


def to_rich(table: Table, width: int) -> RichTable:
    """A terminal table whose numbers never wrap (headers wrap at spaces); names longer than a
    third of ``width`` (a run's path) fold."""
    rich = RichTable(title=table.title, box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    for index, (name, cells) in enumerate(table.cells.items()):
        if index == table.label_column:
            rich.add_column(name, overflow="fold", max_width=max(20, width // 3))
        else:
            widest = max([*(len(word) for word in name.split()), *cells.str.len()])
            rich.add_column(name, justify="right", width=widest)
    for row in table.cells.itertuples(index=False):
        rich.add_row(*row)
    return rich


def mean_std(spread: dict[str, Any] | None) -> str:
    if spread is None:
        return NA
    std = NA if spread["std"] is None else f"{100.0 * spread['std']:.2f}"
    return f"{100.0 * spread['mean']:.2f} ± {std}"


def signed(value: float | None, scale: float, digits: int) -> str:
    return NA if value is None else f"{scale * value:+.{digits}f}"


def p_value(p: float | None) -> str:
    return NA if p is None else "<0.001" if p < 0.001 else f"{p:.3f}"


def value_range(spread: dict[str, Any] | None) -> str:
    if spread is None:
        return NA
    low, high = round(spread["min"]), round(spread["max"])
    return str(low) if low == high else f"{low}–{high}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return NA
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{seconds:.1f}s"
