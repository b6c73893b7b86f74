"""MkDocs hook: the benchmark tables are rendered from ``benchmarks/results/*.json`` at build time,
so the docs show what the benchmark scripts wrote and never a copy that drifts from it.

A page asks for a table with a line ``<!-- benchmark: FILE.json -->``; a missing or unreadable
file fails the build, naming the file and the page.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
MARKER = re.compile(r"^<!-- benchmark: (?P<name>[\w.-]+\.json) -->$", re.MULTILINE)


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}×"


def _before_table(result: dict[str, Any]) -> list[str]:
    """``bench_losses.py --before REV``: today's losses against a revision's, interleaved."""
    lines = [
        f"| case | lovaszseg ms | {result['before']} ms | now / before | per process |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        ms, spread = row["median_ms"], row["per_process_lovaszseg_over_before"]
        cells = [row["title"], _ms(ms["lovaszseg"]), _ms(ms["before"])]
        cells += [f"{row['lovaszseg_over_before']:.2f}", f"{min(spread):.2f}–{max(spread):.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"*{result['device_name']}; {result['threads']} threads, "
              f"{result['processes']} processes × {result['rounds']} rounds.*"]  # fmt: skip
    return lines


def _losses_table(result: dict[str, Any]) -> list[str]:
    """``bench_losses.py``: one row per case, medians of forward + backward."""
    if result.get("before"):
        return _before_table(result)
    peaks = any(row.get("peak_mb") for row in result["rows"])
    header = "| case | CE/BCE ms | lovaszseg ms | smp ms | lovaszseg / CE | smp / lovaszseg |"
    rule = "|---|---:|---:|---:|---:|---:|"
    if peaks:
        header += " peak MB CE / lovaszseg / smp |"
        rule += "---:|"
    lines = [header, rule]
    for row in result["rows"]:
        ms = row["median_ms"]
        cells = [
            row["title"],
            _ms(ms.get("baseline")),
            _ms(ms.get("lovaszseg")),
            _ms(ms.get("smp")),
            _ratio(row.get("lovaszseg_over_baseline")),
            _ratio(row.get("smp_over_lovaszseg")),
        ]
        if peaks:
            peak = row.get("peak_mb") or {}
            cells.append(" / ".join(f"{peak[k]:.0f}" if k in peak else "–" for k in
                                    ("baseline", "lovaszseg", "smp")))  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    machine = result.get("machine") or f"{result['device_name']}, torch {result['torch']}"
    lines.append("")
    lines.append(
        f"*{machine}; {result['threads']} threads, {result['processes']} processes × "
        f"{result['rounds']} rounds; losses on the {result['lovaszseg_kernel']} path.*"
    )
    return lines


def _sync_table(result: dict[str, Any]) -> list[str]:
    """``bench_sync.py``: the batch-level loss on each rank's own pixels against ``sync="global"``."""
    lines = [
        "| case (each process: half the batch) | sync='none' ms | sync='global' ms | overhead |",
        "|---|---:|---:|---:|",
    ]
    for case, ms in result["cases"].items():
        overhead = ms["global"] / ms["none"]
        lines.append(f"| {case} | {ms['none']:.0f} | {ms['global']:.0f} | {overhead:.1f}× |")
    lines.append("")
    lines.append(
        f"*{result['world_size']} gloo processes, {result['threads']} thread each, "
        f"{result['rounds']} rounds.*"
    )
    return lines


def _data_table(result: dict[str, Any]) -> list[str]:
    """``bench_data.py``: loader throughput per worker count against the model's training speed."""
    settings, machine = result["settings"], result["machine"]
    lines = ["| data.num_workers | loader images / s |", "|---:|---:|"]
    for workers, rate in result["loader_images_per_s"].items():
        lines.append(f"| {workers} | {rate:.1f} |")
    lines.append("")
    lines.append(
        f"*Crop {settings['crop_size']} of {settings['image_size']}² images, batch "
        f"{settings['batch_size']}; the model trains {result['model_train_images_per_s']} "
        f"images / s on the same machine ({machine['cpus']} CPUs, torch {machine['torch']}).*"
    )
    return lines


def render(name: str, results: Path = RESULTS) -> str:
    """The Markdown table for ``<results>/<name>`` (``benchmarks/results`` by default)."""
    result = json.loads((results / name).read_text())
    if "rows" in result:
        return "\n".join(_losses_table(result))
    if "cases" in result:
        return "\n".join(_sync_table(result))
    if "loader_images_per_s" in result:
        return "\n".join(_data_table(result))
    raise ValueError("expected the output of bench_losses.py, bench_sync.py or bench_data.py")


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    def table(match: re.Match) -> str:
        name = match["name"]
        try:
            return render(name)
        except (OSError, ValueError, KeyError) as error:
            raise PluginError(
                f"{page.file.src_path}: cannot render benchmarks/results/{name}: "
                f"{type(error).__name__}: {error}"
            ) from error

    return MARKER.sub(table, markdown)
