"""The committed studies' reports are what `lovaszseg.report` makes of their committed runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lovaszseg.report import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("study", "baseline"), [("roads_modes", "bce"), ("voc_modes", "ce")])
def test_committed_study_report_is_reproduced_from_its_runs(study, baseline, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the committed report names its runs relative to the repository
    folder = Path("experiments") / study
    args = [str(folder / "runs"), "--by", "data.synthetic.difficulty", "--baseline", baseline]
    assert main([*args, "--out", str(tmp_path)]) == 0

    made = json.loads((tmp_path / "report.json").read_text())
    assert made == json.loads((folder / "report.json").read_text())
    counted = {
        panel["by_value"]: [(g["label"], g["n"]) for g in panel["groups"]]
        for panel in made["panels"]
    }
    assert all(n == 3 for groups in counted.values() for _, n in groups)
    assert len(counted["hard"]) == 4 and len(counted["easy"]) == 2
