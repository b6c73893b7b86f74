"""A study's report over both continuation arms, through ``lovaszseg.report.main``.

Fake study on roads, four seeds: phase-1 baselines (36 epochs), the restart arm (three epochs
from 0, half of its runs made before configs named their arm: ``init_from`` only) and the
continued arm (epochs 33-35, resumed with ``ckpt_path``; its bce → bce control is the
baseline's own ending). Every number asserted follows from the values written below.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy import stats

from lovaszseg.report import main
from lovaszseg.reporting.paired import holm
from tests.reporting.fakes import write_run

SEEDS = (1, 2, 3, 4)
STOPPED = {1: 0.70, 2: 0.72, 3: 0.74, 4: 0.71}
"""Each seed's baseline score at its last epoch (35); its best is 0.005 higher, at epoch 34."""

RESTART_CONTROL = (-0.010, -0.008, -0.012, -0.006)
"""bce → bce (restart): its last score minus its seed's stopped baseline's."""
RESTART_OVER_CONTROL = {
    "lovasz_hinge": (0.004, 0.006, 0.002, 0.008),
    "lovasz_hinge_bce": (0.010, 0.011, 0.009, 0.010),
}
"""Each restart mode minus bce → bce (restart), seed by seed (best and last alike)."""
CONTINUED_OVER_STOPPING = {
    "bce": (0.0, 0.0, 0.0, 0.0),
    "lovasz_hinge": (0.001, -0.002, 0.003, 0.002),
    "lovasz_hinge_bce": (0.003, 0.004, 0.002, 0.005),
}
"""Each continued mode's last score minus its seed's baseline's; bce's is the baseline itself."""


def restart_over_stopping(loss: str) -> list[float]:
    """A restart mode's last score minus its seed's stopped baseline's: over the control, plus
    the control's own loss to stopping."""
    return [c + d for c, d in zip(RESTART_CONTROL, RESTART_OVER_CONTROL[loss], strict=True)]


def thin(miou: list[float]) -> dict[str, list[float]]:
    """The thin-road IoU logged beside mIoU: half of it, so its Δ are half of mIoU's."""
    return {"road_thin": [0.5 * value for value in miou]}


def restart_run(root: Path, loss: str, seed: int, last: float) -> None:
    """A restart-arm run; seeds 3 and 4 as runs made before the configs named their arm."""
    curve = [last - 0.02, last + 0.01, last]
    checkpoint = f"multirun/baseline/seed{seed}/checkpoints/last.ckpt"
    named = seed < 3
    write_run(
        root / f"seed{seed}" / loss,
        loss=loss,
        seed=seed,
        miou=curve,
        extra_iou=thin(curve),
        extra_config={"init_from": checkpoint}
        | ({"arm": {"name": "restart", "from_loss": "bce"}} if named else {}),
        extra_results={"init_from": checkpoint, "init_from_loss": "bce"},
    )


def continued_run(root: Path, loss: str, seed: int, last: float) -> None:
    curve = [last - 0.05, last + 0.005, last]
    write_run(
        root / f"seed{seed}" / loss,
        loss=loss,
        seed=seed,
        miou=curve,
        first_epoch=33,
        extra_iou=thin(curve),
        extra_config={"arm": {"name": "continued", "from_loss": "bce"}},
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake study's runs, written once for the module's tests (which only read them)."""
    tmp_path = tmp_path_factory.mktemp("study")
    for seed, last in STOPPED.items():
        curve = [last - 0.05] * 34 + [last + 0.005, last]
        write_run(
            tmp_path / "baseline" / f"seed{seed}",
            loss="bce",
            seed=seed,
            miou=curve,
            extra_iou=thin(curve),
        )
        control = last + RESTART_CONTROL[seed - 1]
        restart_run(tmp_path / "modes", "bce", seed, control)
        for loss, deltas in RESTART_OVER_CONTROL.items():
            restart_run(tmp_path / "modes", loss, seed, control + deltas[seed - 1])
        for loss, deltas in CONTINUED_OVER_STOPPING.items():
            continued_run(tmp_path / "continued", loss, seed, last + deltas[seed - 1])
    return tmp_path


@pytest.fixture(scope="module")
def both_arms(study: Path) -> dict:
    """The report the study's script makes over both arms."""
    out = study / "report"
    argv = [str(study / "modes"), str(study / "continued"), "--baseline", "bce → bce"]
    argv += ["--continued-from", str(study / "baseline"), "--holm", "--out", str(out)]
    assert main(argv) == 0
    return json.loads((out / "report.json").read_text())


def groups_of(report: dict) -> dict[str, dict[str, dict]]:
    return {p["by_value"]: {g["label"]: g for g in p["groups"]} for p in report["panels"]}


def p_of(deltas) -> float:
    """The two-sided p of a paired t-test on per-seed differences, as scipy defines it."""
    return float(stats.ttest_1samp(deltas, 0.0).pvalue)


def test_each_arm_is_a_panel_whose_modes_are_labelled_with_it_and_compared_to_its_control(
    both_arms,
):
    report = both_arms
    arms = groups_of(report)
    assert sorted(arms) == ["arm=continued", "arm=restart"]
    for arm, groups in arms.items():
        name = arm.removeprefix("arm=")
        assert sorted(groups) == [
            f"bce → bce ({name})",
            f"bce → lovasz_hinge ({name})",
            f"bce → lovasz_hinge_bce ({name})",
        ]
        assert all(g["n"] == 4 for g in groups.values())
    panels = {p["by_value"]: p for p in report["panels"]}
    assert panels["arm=restart"]["baseline"] == "bce → bce (restart)"
    assert panels["arm=continued"]["baseline"] == "bce → bce (continued)"
    # the arms' own keys (arm, init_from) are no setting that differs between runs
    assert all(p["notes"] == [] for p in report["panels"])
    restart = arms["arm=restart"]["bce → lovasz_hinge_bce (restart)"]["paired_vs_baseline"]
    assert restart["seeds"] == list(SEEDS)
    assert restart["deltas"] == pytest.approx(RESTART_OVER_CONTROL["lovasz_hinge_bce"], abs=1e-12)
    continued = arms["arm=continued"]["bce → lovasz_hinge (continued)"]["paired_vs_baseline"]
    assert continued["deltas"] == pytest.approx(CONTINUED_OVER_STOPPING["lovasz_hinge"], abs=1e-12)


def test_paired_p_are_holm_corrected_across_the_modes_of_each_arm(both_arms):
    arms = groups_of(both_arms)
    raw = {loss: p_of(d) for loss, d in RESTART_OVER_CONTROL.items()}
    assert raw["lovasz_hinge_bce"] < raw["lovasz_hinge"]
    expected = {  # Holm by hand: the smaller p times 2, the larger times 1, then a running max
        "lovasz_hinge_bce": 2 * raw["lovasz_hinge_bce"],
        "lovasz_hinge": max(2 * raw["lovasz_hinge_bce"], raw["lovasz_hinge"]),
    }
    for loss, holm_p in expected.items():
        test = arms["arm=restart"][f"bce → {loss} (restart)"]["paired_vs_baseline"]
        assert test["p"] == pytest.approx(raw[loss], rel=1e-9)
        assert test["p_holm"] == pytest.approx(holm_p, rel=1e-9)
    # the thin road's Δ are half of mIoU's, so its t and p are mIoU's: the same family, apart
    thin_test = arms["arm=restart"]["bce → lovasz_hinge (restart)"]["per_class_paired_vs_baseline"]
    assert thin_test["road_thin"]["mean"] == pytest.approx(0.5 * 0.005, abs=1e-12)
    assert thin_test["road_thin"]["p_holm"] == pytest.approx(expected["lovasz_hinge"], rel=1e-6)
    continued = {loss: p_of(d) for loss, d in CONTINUED_OVER_STOPPING.items() if loss != "bce"}
    pair = sorted(continued.values())
    for loss, p in continued.items():
        test = arms["arm=continued"][f"bce → {loss} (continued)"]["paired_vs_baseline"]
        assert test["p_holm"] == pytest.approx(2 * pair[0] if p == pair[0] else max(2 * pair[0], p))


def test_each_mode_is_paired_with_the_last_score_of_the_baseline_it_continued(both_arms):
    arms = groups_of(both_arms)
    control = arms["arm=restart"]["bce → bce (restart)"]["paired_vs_stopping"]
    assert control["seeds"] == list(SEEDS)
    assert control["deltas"] == pytest.approx(RESTART_CONTROL, abs=1e-12)
    assert control["mean"] == pytest.approx(-0.009, abs=1e-12)
    hinge = arms["arm=restart"]["bce → lovasz_hinge (restart)"]
    gains = restart_over_stopping("lovasz_hinge")
    assert hinge["paired_vs_stopping"]["deltas"] == pytest.approx(gains, abs=1e-12)
    thin_gain = hinge["per_class_paired_vs_stopping"]["road_thin"]
    assert thin_gain["mean"] == pytest.approx(0.5 * sum(gains) / 4, abs=1e-12)
    # the continued control is the baseline's own ending: nothing to test, nothing to correct
    ending = arms["arm=continued"]["bce → bce (continued)"]["paired_vs_stopping"]
    assert ending["deltas"] == [0.0] * 4 and ending["p"] is None and ending["p_holm"] is None
    # the stopping family of the restart arm holds its three groups, the control among them
    raw = {
        "bce": p_of(RESTART_CONTROL),
        "lovasz_hinge": p_of(gains),
        "lovasz_hinge_bce": p_of(restart_over_stopping("lovasz_hinge_bce")),
    }
    assert holm(list(raw.values())) == pytest.approx(
        [
            arms["arm=restart"][f"bce → {loss} (restart)"]["paired_vs_stopping"]["p_holm"]
            for loss in raw
        ],
        rel=1e-9,
    )


def test_the_markdown_names_both_comparisons_and_the_correction(study, both_arms):
    text = (study / "report" / "report.md").read_text()
    assert "## Best val/mIoU — arm=continued" in text
    assert "### Paired by seed: Δ val/mIoU vs bce → bce (restart) — arm=restart" in text
    assert "### Paired by seed: Δ val/mIoU at the last epoch vs stopping — arm=continued" in text
    assert "p (Holm)" in text and "Holm–Bonferroni" in text
    assert "| bce → lovasz_hinge_bce (continued) |" in text


def test_one_arm_alone_keeps_its_labels_without_the_arm_and_its_p_uncorrected(study, tmp_path):
    out = tmp_path / "restart_only"
    assert main([str(study / "modes"), "--baseline", "bce → bce", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    (panel,) = report["panels"]
    assert panel["by_value"] is None and panel["notes"] == []
    labels = sorted(g["label"] for g in panel["groups"])
    assert labels == ["bce → bce", "bce → lovasz_hinge", "bce → lovasz_hinge_bce"]
    assert all("p_holm" not in (g["paired_vs_baseline"] or {}) for g in panel["groups"])
    assert "paired_vs_stopping" not in panel["groups"][0] and "p_correction" not in report


def test_holm_against_a_hand_computed_example():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.2, None, 0.6]) == pytest.approx([0.4, None, 0.6])
    assert holm([0.6, 0.7]) == [1.0, 1.0]
    assert holm([]) == []


def test_a_seed_continued_from_twice_is_refused(study, tmp_path, capsys):
    write_run(tmp_path / "again", loss="bce", seed=1, miou=[0.5])
    argv = [str(study / "modes"), "--continued-from", str(study / "baseline"), str(tmp_path)]
    assert main([*argv, "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert "seed 1 is run twice" in err and "again" in err
