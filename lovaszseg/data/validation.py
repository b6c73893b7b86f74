"""Dataset validation, the counterpart of PaddleSeg's check.py.

Every listed pair is checked: both files exist and decode, the label is single-channel, sizes
match, label values are classes or the ignore index. Every problem is collected with the list
line that named the file, so a user fixes them all in one pass; the per-class pixel histogram
shows the imbalance a loss has to cope with.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from rich.console import Console
from rich.table import Table

from lovaszseg.data.datamodule import SegmentationDataModule
from lovaszseg.data.dataset import pair_problems
from lovaszseg.data.files import Problem, Sample, read_image, read_label


@dataclass
class SplitReport:
    """What checking one split found."""

    split: str
    samples: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)  # worth knowing, not wrong
    pixels: np.ndarray | None = None  # per class, then the ignore index last
    sizes: collections.Counter = field(default_factory=collections.Counter)  # (width, height)


@dataclass
class _SampleResult:
    problems: list[Problem]
    counts: np.ndarray | None = None
    size: tuple[int, int] | None = None
    colour_label: bool = False


def _check_sample(dm: SegmentationDataModule, sample: Sample) -> _SampleResult:
    where = sample.source or str(sample.image)
    problems: list[Problem] = []
    for kind, path in (("image", sample.image), ("label", sample.label)):
        if not path.is_file():
            problems.append(Problem(where, f"{kind} {path} does not exist"))
    if problems:
        return _SampleResult(problems)
    try:
        image = read_image(sample.image)
        raw = read_label(sample.label)
        label = dm.decode_label(raw, sample)
    except ValueError as error:
        return _SampleResult([Problem(where, str(error))])
    messages = pair_problems(image, label, sample, dm.num_classes, dm.ignore_index)
    problems = [Problem(where, message) for message in messages]
    counts = np.bincount(label.ravel(), minlength=256)
    kept = np.append(counts[: dm.num_classes], counts[dm.ignore_index])
    return _SampleResult(problems, kept, (image.shape[1], image.shape[0]), raw.ndim == 3)


def check_split(dm: SegmentationDataModule, split: str, workers: int = 4) -> SplitReport:
    report = SplitReport(split, pixels=np.zeros(dm.num_classes + 1, np.int64))
    try:
        samples, report.problems = dm.scan_samples(split)
    except ValueError as error:
        report.problems.append(Problem(str(dm.root), str(error)))
        return report
    report.samples = len(samples)
    if not samples:
        report.problems.append(Problem(str(dm.root), f"no {split} samples listed"))
    colour_labels = 0
    with ThreadPoolExecutor(max(workers, 1)) as pool:  # decoding releases the GIL
        for result in pool.map(lambda s: _check_sample(dm, s), samples):
            report.problems += result.problems
            colour_labels += result.colour_label
            if result.counts is not None:
                report.pixels += result.counts
                report.sizes[result.size] += 1
    if colour_labels:
        report.notes.append(
            Problem(str(dm.root), f"{colour_labels} label(s) stored in colour, read as grey")
        )
    small = sum(n for (w, h), n in report.sizes.items() if min(w, h) < dm.crop_size)
    if split == "train" and small:
        report.notes.append(
            Problem(str(dm.root), f"{small} image(s) smaller than crop_size {dm.crop_size}: padded")
        )
    return report


def check_dataset(dm: SegmentationDataModule, workers: int = 4) -> list[SplitReport]:
    """Check both splits; a missing root is reported, not raised."""
    try:
        dm.prepare_data()
    except ValueError as error:
        return [SplitReport("train", problems=[Problem(str(dm.root), str(error))])]
    if not dm.root.is_dir():
        return [
            SplitReport("train", problems=[Problem(str(dm.root), "dataset root does not exist")])
        ]
    return [check_split(dm, split, workers) for split in ("train", "val")]


def _size_range(sizes: Iterable[tuple[int, int]]) -> str:
    sizes = list(sizes)
    if not sizes:
        return "-"
    low, high = min(sizes, key=lambda s: s[0] * s[1]), max(sizes, key=lambda s: s[0] * s[1])
    return f"{low[0]}x{low[1]}" if low == high else f"{low[0]}x{low[1]} .. {high[0]}x{high[1]}"


def print_report(
    dm: SegmentationDataModule, reports: list[SplitReport], console: Console, max_shown: int = 50
) -> int:
    """Print problems, notes, a summary and the class histogram; return the number of problems."""
    problems = [p for r in reports for p in r.problems]
    for p in problems[:max_shown]:
        console.print(f"[red]error[/] {p.location}: {p.message}", highlight=False, soft_wrap=True)
    if len(problems) > max_shown:
        console.print(f"[red]... and {len(problems) - max_shown} more problems[/]")
    for note in [n for r in reports for n in r.notes][:max_shown]:
        console.print(
            f"[yellow]note[/] {note.location}: {note.message}", highlight=False, soft_wrap=True
        )

    summary = Table(title=f"{dm.dataset_name} at {dm.root}")
    for column in ("split", "samples", "problems", "image sizes"):
        summary.add_column(
            column, justify="left" if column in ("split", "image sizes") else "right"
        )
    for r in reports:
        style = "red" if r.problems else "green"
        summary.add_row(
            r.split, str(r.samples), f"[{style}]{len(r.problems)}[/]", _size_range(r.sizes)
        )
    console.print(summary)

    histogram = Table(title="pixels per class")
    histogram.add_column("class")
    for r in reports:
        histogram.add_column(f"{r.split} pixels", justify="right")
        histogram.add_column(f"{r.split} %", justify="right")
    names = [*dm.class_names, f"ignore ({dm.ignore_index})"]
    for index, name in enumerate(names):
        cells = []
        for r in reports:
            total = int(r.pixels.sum()) if r.pixels is not None else 0
            count = int(r.pixels[index]) if r.pixels is not None else 0
            cells += [f"{count:,}", f"{100 * count / total:.2f}" if total else "-"]
        histogram.add_row(name, *cells)
    console.print(histogram)
    verdict = (
        f"[red]{len(problems)} problem(s) found[/]" if problems else "[green]no problems found[/]"
    )
    console.print(verdict)
    return len(problems)
