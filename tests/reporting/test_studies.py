"""The committed studies' reports are what `lovaszseg.report` makes of their committed runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lovaszseg.report import main

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "experiments"


def assert_same(made: object, committed: object, where: str = "report.json") -> None:
    """Equal keys, strings, ints, bools and None; floats equal to 1e-12 relative, since pandas'
    and scipy's sums may round the last bit differently from the code that committed them."""
    assert type(made) is type(committed), f"{where}: {made!r} vs {committed!r}"
    if isinstance(made, dict):
        assert list(made) == list(committed), f"{where}: keys {list(made)} vs {list(committed)}"
        for key in made:
            assert_same(made[key], committed[key], f"{where}.{key}")
    elif isinstance(made, list):
        assert len(made) == len(committed), f"{where}: {len(made)} vs {len(committed)} items"
        for index, (a, b) in enumerate(zip(made, committed, strict=True)):
            assert_same(a, b, f"{where}[{index}]")
    elif isinstance(made, float):
        assert math.isclose(made, committed, rel_tol=1e-12), f"{where}: {made!r} vs {committed!r}"
    else:
        assert made == committed, f"{where}: {made!r} vs {committed!r}"


def test_assert_same_tells_rounding_from_a_change():
    assert_same({"a": [1, 0.1 + 0.2, None, "x"]}, {"a": [1, 0.3, None, "x"]})
    for made, committed in (({"a": 1.0}, {"a": 1}), ([0.3], [0.3001]), ({"a": 1}, {"b": 1})):
        with pytest.raises(AssertionError):
            assert_same(made, committed)


def remade_report(folder: Path, args: list[str], out: Path) -> dict:
    """The report of ``folder``'s committed runs, remade into ``out``: the Markdown byte for byte,
    the JSON the same up to the last bits of its floats."""
    assert main([*args, "--out", str(out)]) == 0
    assert (out / "report.md").read_bytes() == (folder / "report.md").read_bytes()
    made = json.loads((out / "report.json").read_text())
    assert_same(made, json.loads((folder / "report.json").read_text()))
    return made


def seed_counts(report: dict) -> dict[str | None, list[tuple[str, int]]]:
    return {
        panel["by_value"]: [(g["label"], g["n"]) for g in panel["groups"]]
        for panel in report["panels"]
    }


@pytest.mark.parametrize(("study", "baseline"), [("roads_modes", "bce"), ("voc_modes", "ce")])
def test_early_training_study_report_is_reproduced_from_its_runs(
    study, baseline, tmp_path, monkeypatch
):
    monkeypatch.chdir(ROOT)  # the committed report names its runs relative to the repository
    folder = Path("experiments") / study / "early"
    args = [str(folder / "runs"), "--by", "data.synthetic.difficulty", "--baseline", baseline]
    counted = seed_counts(remade_report(folder, args, tmp_path))
    assert all(n == 3 for groups in counted.values() for _, n in groups)
    assert len(counted["hard"]) == 4 and len(counted["easy"]) == 2


@pytest.mark.parametrize(
    ("pilot", "args"),
    [
        ("roads_modes/pilot", ["--include-incomplete"]),
        ("voc_modes/pilot", ["--by", "data.synthetic.colour_sharing", "--include-incomplete"]),
    ],
)
def test_pilot_reports_are_reproduced_from_their_runs(pilot, args, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    folder = Path("experiments") / pilot
    made = remade_report(folder, [str(folder / "runs"), *args], tmp_path)
    assert all(g["label"] in ("bce", "ce") for p in made["panels"] for g in p["groups"])


PLATEAU_STUDIES = [
    pytest.param(
        study,
        baseline,
        marks=pytest.mark.skipif(
            not (EXPERIMENTS / study / "runs" / "modes").is_dir(), reason=f"{study}: not run yet"
        ),
    )
    for study, baseline in (
        ("roads_modes", "bce"),
        ("voc_modes", "ce"),
        # the schedules that missed the plateau rule, kept as pilots
        ("roads_modes/pilot_12_epochs", "bce"),
        ("roads_modes/pilot_24_epochs", "bce"),
        ("roads_modes/pilot_36_epochs", "bce"),
        ("voc_modes/pilot_20_epochs", "ce"),
        ("voc_modes/pilot_30_epochs", "ce"),
        ("voc_modes/pilot_50_epochs", "ce"),
        ("voc_modes/pilot_50_epochs_power2", "ce"),
        ("voc_modes/pilot_72_epochs", "ce"),
        # VOC's first 96-epoch version: the restart arm alone, at code before 5430930
        ("voc_modes/first_96_epochs", "ce"),
    )
]


@pytest.mark.parametrize(("study", "baseline"), PLATEAU_STUDIES)
def test_plateau_study_reports_are_reproduced_from_their_runs(
    study, baseline, tmp_path, monkeypatch
):
    monkeypatch.chdir(ROOT)
    folder = Path("experiments") / study
    baselines = remade_report(
        folder / "baseline",
        [str(folder / "runs" / "baseline"), "--baseline", baseline],
        tmp_path / "baseline",
    )
    modes = remade_report(
        folder,
        [str(folder / "runs" / "modes"), "--baseline", f"{baseline} → {baseline}"],
        tmp_path / "modes",
    )
    (baseline_group,) = baselines["panels"][0]["groups"]
    assert baseline_group["label"] == baseline
    labels = [label for label, _n in seed_counts(modes)[None]]
    assert len(labels) == 4 and all(label.startswith(f"{baseline} → ") for label in labels)
    if (folder / "arms").is_dir():  # both continuation arms, each against its own control
        arms = remade_report(
            folder / "arms",
            [
                *(str(folder / "runs" / arm) for arm in ("modes", "continued")),
                *("--baseline", f"{baseline} → {baseline}", "--holm"),
                *("--continued-from", str(folder / "runs" / "baseline")),
            ],
            tmp_path / "arms",
        )
        assert sorted(panel["by_value"] for panel in arms["panels"]) == [
            "arm=continued",
            "arm=restart",
        ]
        for panel in arms["panels"]:
            arm = panel["by_value"].removeprefix("arm=")
            assert panel["baseline"] == f"{baseline} → {baseline} ({arm})"
            assert [g["n"] for g in panel["groups"]] == [baseline_group["n"]] * 4  # every seed
