"""Reports do not mix apples and oranges: runs of other data or another metric definition get
panels of their own, every status is named, and the figure's y axis shows noise as noise."""

from __future__ import annotations

import json

import matplotlib.figure
import pytest

from lovaszseg.report import main
from lovaszseg.reporting.plot import MIN_SPAN_POINTS
from lovaszseg.runs import contract
from tests.reporting.fakes import road_curve, write_run

VOC_CLASSES = ("background", "cat", "dog")


def report_of(tmp_path, *args: str) -> dict:
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), *args]) == 0
    return json.loads((tmp_path / "out" / "report.json").read_text())


def test_runs_of_different_data_are_never_pooled(tmp_path):
    for seed in (1, 2):  # the case: lovasz_softmax on roads and on VOC
        write_run(
            tmp_path / "runs" / f"roads{seed}",
            loss="lovasz_softmax",
            seed=seed,
            miou=road_curve(0.80 + 0.01 * seed),
        )
        write_run(
            tmp_path / "runs" / f"voc{seed}",
            loss="lovasz_softmax",
            seed=seed,
            miou=road_curve(0.30 + 0.01 * seed),
            classes=VOC_CLASSES,
            data="synthetic_voc",
        )
    report = report_of(tmp_path)
    panels = {p["by_value"]: p for p in report["panels"]}
    assert list(panels) == ["data=synthetic_roads", "data=synthetic_voc"]
    for name, mean in (("data=synthetic_roads", 0.815), ("data=synthetic_voc", 0.315)):
        (group,) = panels[name]["groups"]
        assert group["best"]["mean"] == pytest.approx(mean)
        assert group["best"]["std"] == pytest.approx(0.01 / 2**0.5)  # not 0.25 of the mix
        assert panels[name]["data"] == [name.split("=")[1]]
        assert not any("differ" in note for note in panels[name]["notes"])
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "## Best val/mIoU — data=synthetic_roads" in markdown
    assert "## Best val/mIoU — data=synthetic_voc" in markdown


def test_runs_of_one_data_scored_over_other_classes_are_not_pooled(tmp_path):
    for classes in (("background", "road"), VOC_CLASSES):
        write_run(
            tmp_path / "runs" / str(len(classes)),
            loss="ce",
            seed=1,
            miou=road_curve(0.5),
            classes=classes,
            data="custom",
        )
    report = report_of(tmp_path, "--by", "data.difficulty")
    assert [p["by_value"] for p in report["panels"]] == [
        "classes=2 (binary) · hard",
        "classes=3 (multiclass) · hard",
    ]
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "## Best val/mIoU — classes=2 (binary) · data.difficulty=hard" in markdown


def test_a_run_without_results_joins_the_data_its_sweep_agrees_on(tmp_path):
    for seed in (1, 2):
        write_run(tmp_path / "runs" / str(seed), loss="bce", seed=seed, miou=road_curve(0.7))
    write_run(tmp_path / "runs" / "3", loss="bce", seed=3, miou=[0.4], complete=False)
    (panel,) = report_of(tmp_path)["panels"]
    assert panel["by_value"] is None and panel["groups"][0]["n_incomplete_left_out"] == 1


def test_failed_running_and_cut_short_runs_are_named_so_and_not_counted(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs / "done", loss="bce", seed=1, miou=road_curve(0.70))
    write_run(runs / "failed", loss="bce", seed=2, miou=[0.5], status="failed")
    write_run(runs / "running", loss="bce", seed=3, miou=[0.6], status="running")
    write_run(runs / "stopped", loss="bce", seed=4, miou=[0.65], status="interrupted")
    write_run(runs / "dead", loss="bce", seed=5, miou=[0.3], complete=False)
    refused = write_run(runs / "refused", loss="bce", seed=6, miou=[0.3], complete=False)
    (refused / "metrics.csv").unlink()  # refused at the config check: what train leaves behind
    contract.write_results(
        refused / "results.json", {"status": "failed", "error": "ValueError: data.batch_size"}
    )
    summary = report_of(tmp_path)
    (panel,) = summary["panels"]
    (group,) = panel["groups"]
    statuses = {r["path"].rsplit("/", 1)[1]: (r["status"], r["counted"]) for r in group["runs"]}
    assert statuses == {
        "done": ("completed", True),
        "failed": ("failed", False),
        "running": ("running", False),
        "stopped": ("incomplete", False),
        "dead": ("incomplete", False),
    }
    # refused before training: named apart, in no group (not a "+1"), in no setting note
    assert summary["failed_before_training"] == [str(refused)]
    assert (group["n"], group["n_incomplete_left_out"]) == (1, 4)
    assert group["best"]["values"] == [0.70]
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "5 runs (4 incomplete)" in markdown  # not completed, each with its status below
    listed, refused_note = markdown.split("## Incomplete runs")[1].split("Left out, failed")
    rows = [[cell.strip() for cell in line.split("|")] for line in listed.splitlines()]
    named = {
        "failed": "failed",
        "running": "running",
        "stopped": "incomplete",
        "dead": "incomplete",
    }
    for name, status in named.items():
        assert any(str(runs / name) in row and status in row for row in rows), name
    assert str(refused) not in listed and f"- `{refused}`" in refused_note


@pytest.mark.parametrize(
    ("curve", "span"), [((0.7, 0.7005, 0.7013), MIN_SPAN_POINTS), ((0.5, 0.8, 0.7), 30.0)]
)
def test_the_figure_spans_at_least_two_points_so_noise_looks_like_noise(
    tmp_path, monkeypatch, curve, span
):
    limits = []
    save = matplotlib.figure.Figure.savefig

    def record_limits(figure, *args, **kwargs):
        limits.append(figure.axes[0].get_ylim())
        return save(figure, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record_limits)
    write_run(tmp_path / "runs" / "1", loss="bce", seed=1, miou=list(curve))
    report_of(tmp_path)
    ((low, high),) = limits
    assert high - low == pytest.approx(span, rel=0.15)
    assert low < 100 * min(curve) and 100 * max(curve) < high
