"""``python -m lovaszseg.report RUN_OR_SWEEP_DIR...``: compare loss configurations across runs.

Reads the runs' metrics.csv / results.json / .hydra, and writes ``miou_per_epoch.png``,
``report.md`` and ``report.json`` into ``--out`` (default: the first directory given), then
prints the ranked table. Runs of different data or metric definitions, and the continuation
arms of a study (restart, continued), are always compared apart, in panels of their own (a
study's command is in ``--help``). Bad input exits with status 2 and a message naming the path.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.measure import Measurement

from lovaszseg.reporting.aggregate import Report, summarise
from lovaszseg.reporting.paired import compare_to_stopping, correct_panel
from lovaszseg.reporting.plot import plot_curves
from lovaszseg.reporting.render import (
    FAILED_BEFORE_TRAINING,
    Table,
    describe,
    incomplete_table,
    panel_tables,
    render_markdown,
    subject,
    to_rich,
)
from lovaszseg.reporting.runs import find_searches, load_runs
from lovaszseg.runs import contract
from lovaszseg.runs.atomic import write_text_atomic

FIGURE_NAME = "miou_per_epoch.png"
STUDY_EXAMPLE = """\
A study's report over both continuation arms (each arm a panel with its own control, labelled
'bce → lovasz_hinge (restart)' / '(continued)'), each mode also paired with the baseline run it
continued from, p corrected across the modes:
  python -m lovaszseg.report runs/modes runs/continued --baseline "bce → bce" \\
      --continued-from runs/baseline --holm --out arms/
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lovaszseg.report",
        description="Compare loss configurations: figure, ranked table and JSON from runs.",
        epilog=STUDY_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "dirs",
        nargs="+",
        type=Path,
        metavar="RUN_OR_SWEEP_DIR",
        help="run dirs, Hydra sweep dirs, or folders holding them",
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="output folder (default: the first dir)"
    )
    parser.add_argument(
        "--baseline",
        metavar="LOSS",
        help="loss group to compare against (default: bce for binary, ce for multiclass runs); "
        "with several arms, each arm's own group of that loss, e.g. 'bce → bce (restart)'",
    )
    parser.add_argument(
        "--metric",
        default=contract.VAL_MIOU,
        metavar="NAME",
        help=f"metrics.csv column to rank by, higher is better (default: {contract.VAL_MIOU})",
    )
    parser.add_argument(
        "--by",
        metavar="KEY",
        help="config key or group choice to compare separately, e.g. data.synthetic.difficulty "
        "(runs of different data or classes are always compared apart)",
    )
    parser.add_argument(
        "--continued-from",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="the runs these runs continued from, one per seed (a study's baselines): adds each "
        "group's Δ of its last score to its seed's last score there, paired by seed — what "
        "continuing gains over stopping",
    )
    parser.add_argument(
        "--holm",
        action="store_true",
        help="correct the paired tests' p across the groups of each panel (Holm–Bonferroni, "
        "each metric and comparison on its own), e.g. the modes of a study's arm",
    )
    parser.add_argument(
        "--include-incomplete",
        action="store_true",
        help="count unfinished runs in the statistics (e.g. while a sweep runs)",
    )
    return parser.parse_args(argv)


def build_report(args: argparse.Namespace) -> tuple[Report, list[dict[str, Any]]]:
    """Load, summarise and write the report files; raises ValueError on bad input."""
    runs = load_runs(args.dirs)
    report = summarise(runs, args.metric, args.baseline, args.by, args.include_incomplete)
    if args.continued_from:
        compare_to_stopping(report, load_runs(args.continued_from))
        report.summary["continued_from"] = [str(path) for path in args.continued_from]
    if args.holm:
        for panel in report.panels:
            correct_panel(panel)
        report.summary["p_correction"] = "holm"
    out = args.out or args.dirs[0]
    plot_curves(report, f"{args.metric} per epoch — {subject(report)}", out / FIGURE_NAME)
    searches = find_searches(args.dirs)
    write_text_atomic(out / "report.md", render_markdown(report, args.dirs, FIGURE_NAME, searches))
    exported = report.summary | ({"optuna": searches} if searches else {})
    write_text_atomic(out / "report.json", json.dumps(exported, indent=2) + "\n")
    return report, searches


def print_table(console: Console, table: Table) -> None:
    """Wrapped to the console's width, or wider: a number cut short would mislead."""
    rich = to_rich(table, console.width)
    words = Measurement.get(console, console.options.update_width(10_000), rich).minimum
    (console if words <= console.width else Console(width=words)).print(rich)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    try:
        report, searches = build_report(args)
    except ValueError as err:
        print(f"lovaszseg.report: error: {err}", file=sys.stderr)
        return 2
    for panel, heading in zip(report.panels, report.headings, strict=True):
        for table in panel_tables(panel, heading, report.metric):
            print_table(console, table)
        for note in panel["notes"]:
            console.print(f"[yellow]note:[/] {note}")
    if report.summary["incomplete_runs"]:
        print_table(console, incomplete_table(report))
    if refused := report.summary.get("failed_before_training"):
        console.print(f"[yellow]{FAILED_BEFORE_TRAINING}:[/] " + ", ".join(refused))
    for search in searches:
        console.print(f"optuna {describe(search)}")
    console.print(f"wrote {FIGURE_NAME}, report.md, report.json to {args.out or args.dirs[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
