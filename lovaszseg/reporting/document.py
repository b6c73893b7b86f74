"""The report as Markdown: what was compared, the figure, the ranked tables, and the caveats.

It is written to be pasted into an experiment README as it stands, so it says how the numbers
were computed and how to read Δ/σ against seed noise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from lovaszseg.reporting.aggregate import Report, critical_t
from lovaszseg.reporting.table import (
    incomplete_table,
    paired_table,
    per_class_delta_table,
    per_class_paired_table,
    per_class_table,
    ranking_table,
    to_markdown,
)

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


def paired_guide(pairs: Iterable[int]) -> str:
    """How to read the paired tables, with the |t| that p < 0.05 needs at each seed count."""
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


def subject(report: Report) -> str:
    """The data and model names across all panels, for titles."""
    data = sorted({d for p in report.panels for d in p.data}) or ["unknown data"]
    model = sorted({m for p in report.panels for m in p.model}) or ["unknown model"]
    return f"{', '.join(data)} · {', '.join(model)}"


def render_markdown(report: Report, sources: Sequence[Path], figure_name: str) -> str:
    runs = sum(len(g.scores) + len(g.left_out) for p in report.panels for g in p.groups)
    lines = [
        f"# {report.metric}: {subject(report)}",
        "",
        f"{runs} runs ({len(report.incomplete)} incomplete) from "
        + ", ".join(f"`{s}`" for s in sources)
        + (f", compared separately for each `{report.by}`." if report.by else "."),
        "",
        READING_GUIDE.format(metric=report.metric),
        "",
        f"![{report.metric} per epoch]({figure_name})",
    ]
    for panel in report.panels:
        table = ranking_table(panel, report.metric)
        lines += ["", f"## {table.title}", "", to_markdown(table)]
        classes = per_class_table(panel)
        if classes is not None:
            lines += ["", f"### {classes.title}", "", to_markdown(classes)]
        deltas = per_class_delta_table(panel)
        if deltas is not None:
            lines += ["", f"### {deltas.title}", "", to_markdown(deltas)]
        paired = paired_table(panel, report.metric)
        if paired is not None:
            guide = paired_guide(g.paired.n for g in panel.groups if g.paired is not None)
            lines += ["", f"### {paired.title}", "", guide, "", to_markdown(paired)]
        paired_classes = per_class_paired_table(panel)
        if paired_classes is not None:
            lines += ["", f"### {paired_classes.title}", "", to_markdown(paired_classes)]
        if panel.notes:
            lines += ["", *(f"- {note}" for note in panel.notes)]
    if report.incomplete:
        lines += ["", "## Incomplete runs", "", to_markdown(incomplete_table(report))]
    return "\n".join(lines) + "\n"
