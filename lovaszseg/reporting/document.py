"""The report as Markdown: what was compared, the figure, the ranked tables, and the caveats.

It is written to be pasted into an experiment README as it stands, so it says how the numbers
were computed and how to read Δ/σ against seed noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lovaszseg.reporting.aggregate import Report
from lovaszseg.reporting.optuna import describe
from lovaszseg.reporting.table import incomplete_table, panel_tables, to_markdown

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


def subject(report: Report) -> str:
    """The data and model names across all panels, for titles."""
    data = sorted({d for p in report.panels for d in p["data"]}) or ["unknown data"]
    model = sorted({m for p in report.panels for m in p["model"]}) or ["unknown model"]
    return f"{', '.join(data)} · {', '.join(model)}"


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
        if panel["notes"]:
            lines += ["", *(f"- {note}" for note in panel["notes"])]
    if report.summary["incomplete_runs"]:
        lines += ["", "## Incomplete runs", "", to_markdown(incomplete_table(report))]
    if searches:
        lines += ["", "## Optuna searches", "", *(f"- {describe(s)}" for s in searches)]
    return "\n".join(lines) + "\n"
