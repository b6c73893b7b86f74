"""``python -m lovaszseg.report`` end to end: files written, ranked, decodable; clean errors."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest
from PIL import Image

from lovaszseg.report import FIGURE_NAME, main
from lovaszseg.reporting.plot import DPI, LEGEND_WIDTH, PANEL_SIZE
from tests.reporting.fakes import road_curve, roads_sweeps, write_run, write_sweep


def table_lines(markdown: str) -> list[str]:
    """The Markdown with each table row's cells stripped of their padding: ``| a | b |``."""
    return [
        "| " + " | ".join(cell.strip() for cell in line.strip("|").split(" | ")) + " |"
        if line.startswith("|")
        else line
        for line in markdown.splitlines()
    ]


def test_report_on_two_sweeps_writes_figure_table_and_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich's terminal width, so the table is not folded
    sweeps = roads_sweeps(tmp_path)
    out = tmp_path / "report"
    assert main([*map(str, sweeps), "--out", str(out)]) == 0

    with Image.open(out / FIGURE_NAME) as png:
        png.load()
        assert png.format == "PNG"
        assert png.size == (round((PANEL_SIZE[0] + LEGEND_WIDTH) * DPI), round(PANEL_SIZE[1] * DPI))
    assert sorted(p.name for p in out.iterdir()) == [FIGURE_NAME, "report.json", "report.md"]

    markdown = (out / "report.md").read_text()
    lines = table_lines(markdown)
    table_rows = [line for line in lines if line.startswith("| ")]
    header = table_rows[0]
    assert "Δ vs bce (pp)" in header and "IoU road (%)" in header  # 2 classes: columns
    assert table_rows[2].startswith("| 1 | lovasz_hinge_bce | 3 (+1) | 76.00 ± 1.00 |")
    assert "| +4.00 | +2.5 | 97.00 ± 0.00 | 55.00 ± 2.00 |" in table_rows[2]
    assert table_rows[3].startswith("| 2 | bce | 3 | 72.00 ± 2.00 | baseline | – |")
    assert table_rows[4].startswith("| 3 | lovasz_hinge | 1 | 66.00 ± n/a | -6.00 | -3.0 |")
    assert "## Incomplete runs" in markdown
    crashed = f"| {sweeps[1] / '3'} | lovasz_hinge_bce | 4 | incomplete | 1 | 90.00 | no |"
    assert crashed in lines
    # paired by seed: lovasz_hinge_bce − bce = 0.05, 0.04, 0.03 (t = 4·√3, p = 0.020)
    assert "### Paired by seed: Δ val/mIoU vs bce" in markdown
    assert "p < 0.05 needs |t| > 4.30 with 3 seeds. Across" in markdown  # 1 pair: no threshold
    assert (
        "| lovasz_hinge_bce | 1 / 2 / 3 | +5.00 / +4.00 / +3.00 | +4.00 | +6.93 | 0.020 |" in lines
    )
    assert "| lovasz_hinge | 1 | -4.00 | -4.00 | n/a | n/a |" in lines
    assert "| road | +8.00 (+6.9, 0.020) | -8.00 (n/a, n/a) |" in lines

    data = json.loads((out / "report.json").read_text())
    groups = data["panels"][0]["groups"]
    assert [g["label"] for g in groups] == ["lovasz_hinge_bce", "bce", "lovasz_hinge"]
    assert groups[0]["best"]["mean"] == pytest.approx(0.76)
    assert groups[0]["delta_vs_baseline"] == pytest.approx(0.04)
    assert groups[2]["best"]["std"] is None
    assert data["incomplete_runs"] == [str(sweeps[1] / "3")]
    paired = groups[0]["paired_vs_baseline"]
    assert paired["seeds"] == [1, 2, 3] and paired["t"] == pytest.approx(4 * math.sqrt(3))
    assert groups[0]["per_class_paired_vs_baseline"]["road"]["deltas"] == pytest.approx(
        [0.10, 0.08, 0.06]
    )
    assert groups[1]["paired_vs_baseline"] is None  # the baseline itself

    printed = capsys.readouterr().out
    assert "lovasz_hinge_bce" in printed and "76.00 ± 1.00" in printed


def test_report_defaults_to_the_first_dir_and_splits_many_classes(tmp_path):
    classes = ("background", "a", "b", "c", "d", "e")
    sweep = write_sweep(
        tmp_path / "voc",
        [
            {"loss": loss, "seed": s, "miou": road_curve(m + 0.01 * s), "classes": classes}
            for loss, m in (("ce", 0.5), ("lovasz_softmax_ce", 0.52))
            for s in (1, 2)
        ],
    )
    assert main([str(sweep), "--by", "data.difficulty"]) == 0
    markdown = (sweep / "report.md").read_text()
    assert "## Best val/mIoU — data.difficulty=hard" in markdown
    assert "### Per-class IoU (%) — data.difficulty=hard" in markdown
    assert any(line.startswith("| e | ") for line in table_lines(markdown))
    assert "IoU e (%)" not in markdown
    assert (sweep / FIGURE_NAME).stat().st_size > 10_000


@pytest.mark.parametrize("bad", ["empty", "csv"])
def test_bad_input_exits_2_naming_the_path(tmp_path, capsys, bad):
    target = tmp_path / "runs"
    if bad == "empty":
        target.mkdir()
        named = target
    else:
        run_dir = write_run(target, loss="bce", seed=1, miou=[0.5])
        named = run_dir / "metrics.csv"
        named.write_text("epoch,step,val/mIoU\n0,1,oops\n")
    assert main([str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lovaszseg.report: error:") and str(named) in err
    assert not list(target.glob("report.*"))


def test_module_entry_point_runs(tmp_path):
    run_dir = write_run(tmp_path / "run", loss="bce", seed=1, miou=road_curve(0.7))
    done = subprocess.run(
        [sys.executable, "-m", "lovaszseg.report", str(run_dir), "--metric", "val/IoU_road"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "43.00 ± n/a" in (run_dir / "report.md").read_text()  # road IoU = 2·0.70 − 0.97


def test_run_dead_in_its_first_epoch_is_listed_and_no_cell_is_cut_at_80_columns(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "80")  # what a SLURM log or a pipe gets
    sweeps = roads_sweeps(tmp_path)
    dead = write_run(sweeps[0] / "9", loss="bce", seed=9, miou=[0.5], complete=False, job_num=9)
    (dead / "metrics.csv").write_text("lr-AdamW,step\n0.002,0\n")  # killed before epoch 0 ended
    for extra in ([], ["--include-incomplete"]):
        assert main([*map(str, sweeps), "--out", str(tmp_path / "out"), *extra]) == 0
        printed = capsys.readouterr().out
        assert "…" not in printed
        for header_word in ("loss", "Δ/σ", "background", "road", "epochs", "run", "counted"):
            assert header_word in printed, header_word
        cells = ("76.00 ± 1.00", "+2.5", "55.00 ± 2.00") if not extra else ()
        for cell in ("lovasz_hinge_bce", "1m 00s", *cells):  # --include-incomplete moves means
            assert cell in printed, cell
        # the dead run: loss, seed, status, 0 epochs logged, no score (its long path may fold)
        assert re.search(r"\sbce\s+9\s+incomplete\s+0\s+n/a\s", printed), printed


def test_an_optuna_search_is_named_with_its_best_trial_and_job(tmp_path, capsys):
    sweep = write_sweep(
        tmp_path / "search",
        [{"loss": "bce", "seed": s, "miou": road_curve(0.7 + 0.01 * s)} for s in (1, 2, 3)],
    )
    (sweep / "optimization_results.yaml").write_text("best_params: {seed: 2}\nbest_value: 0.72\n")
    assert main([str(sweep)]) == 0
    (search,) = json.loads((sweep / "report.json").read_text())["optuna"]
    assert search == {
        "sweep": str(sweep.resolve()),
        "trials": 3,
        "best_value": 0.72,
        "best_params": {"seed": 2},
        "best_job": str((sweep / "1").resolve()),
    }
    expected = f"- `{sweep.resolve()}`: 3 trials, best value 0.7200 with `seed=2` (1)"
    assert expected in (sweep / "report.md").read_text().splitlines()
    assert "optuna" in capsys.readouterr().out
