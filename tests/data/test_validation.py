"""check: every problem reported with file and line, a histogram, a non-zero exit."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from PIL import Image
from rich.console import Console

from lovaszseg.check import main, run
from lovaszseg.data import DeepGlobeRoadDataModule, VOCSegmentationDataModule
from lovaszseg.data.synthetic import SyntheticRoads, SyntheticVOC
from lovaszseg.data.validation import check_dataset

TINY = {"num_train": 4, "num_val": 2, "image_size": 96}


def check_config(name: str, root, **synthetic):
    overrides = [f"data={name}", f"data.root={root}", "workers=2"]
    overrides += [f"++data.synthetic.{k}={v}" for k, v in synthetic.items()]
    with initialize_config_module("lovaszseg.conf", version_base="1.3"):
        return compose("check", overrides=overrides)


def test_clean_synthetic_roads_pass_with_the_imbalance_shown(tmp_path):
    console = Console(record=True, width=120)
    assert run(check_config("synthetic_roads", tmp_path / "r", **TINY), console) == 0
    out = console.export_text()
    assert "no problems found" in out and "road" in out and "ignore (255)" in out
    reports = check_dataset(DeepGlobeRoadDataModule(tmp_path / "r"))
    assert [r.samples for r in reports] == [4, 2]
    train = reports[0].pixels
    assert train.sum() == 4 * 96 * 96 and train[2] == 0  # no ignore pixels in road labels
    assert 0.02 < train[1] / train.sum() < 0.08
    assert reports[0].sizes == {(96, 96): 4}


def test_every_problem_is_reported_with_its_list_line(tmp_path):
    root = tmp_path / "r"
    DeepGlobeRoadDataModule(root, synthetic=SyntheticRoads(**TINY)).setup()
    (root / "train" / "0000_mask.png").unlink()  # missing
    (root / "train" / "0001_sat.jpg").write_bytes(b"not a jpeg")  # undecodable
    Image.fromarray(np.zeros((50, 96), np.uint8)).save(root / "train" / "0002_mask.png")  # size
    with (root / "train.txt").open("a") as f:
        f.write("only_one_field\n")
    (root / "val" / "0001_sat.jpg").unlink()
    reports = check_dataset(DeepGlobeRoadDataModule(root))
    found = sorted(
        f"{p.location.rsplit('/', 1)[-1]} {p.message.split(':')[0][:40]}"
        for r in reports
        for p in r.problems
    )
    messages = " | ".join(p.message for r in reports for p in r.problems)
    assert [f.split()[0] for f in found] == [
        "train.txt:1",
        "train.txt:2",
        "train.txt:3",
        "train.txt:5",
        "val.txt:2",
    ]
    assert "0000_mask.png does not exist" in messages and "cannot decode" in messages
    assert "is 96x96 but label" in messages and "expected 'image|label'" in messages
    assert "0001_sat.jpg does not exist" in messages


def test_voc_values_out_of_range_and_colour_labels_are_problems(tmp_path):
    root = tmp_path / "v"
    dm = VOCSegmentationDataModule(
        root, synthetic=SyntheticVOC(**{**TINY, "num_train": 3, "num_val": 1})
    )
    dm.setup()
    first, second = (s.label for s in dm.train_dataset.samples[:2])
    label = np.asarray(Image.open(first)).copy()
    label[:2, :2] = 77
    Image.fromarray(label, mode="L").save(first)
    Image.open(second).convert("RGB").save(second)
    reports = check_dataset(VOCSegmentationDataModule(root))
    messages = [p.message for p in reports[0].problems]
    assert len(messages) == 2
    assert "holds values [77]; expected 0..20 or 255" in messages[0]
    assert "is an RGB image" in messages[1]


def test_missing_root_is_a_problem_not_a_crash(tmp_path):
    reports = check_dataset(VOCSegmentationDataModule(tmp_path / "absent"))
    assert reports[0].problems and "does not exist" in reports[0].problems[0].message


def test_cli_exits_non_zero_and_names_the_file(tmp_path, monkeypatch, capsys):
    root = tmp_path / "r"
    DeepGlobeRoadDataModule(root, synthetic=SyntheticRoads(**TINY)).setup()
    (root / "val" / "0000_mask.png").write_bytes(b"\x89PNG broken")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(
        sys, "argv", ["lovaszseg.check", f"data.root={root}", "data.synthetic=null"]
    )
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 1
    out = capsys.readouterr().out
    assert "val.txt:1" in out and "0000_mask.png" in out and "1 problem(s) found" in out
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["r"]  # no outputs


@pytest.mark.parametrize("name", ["mini_deepglobe", "voc2012"])
def test_real_configs_report_an_absent_download(name, tmp_path):
    console = Console(record=True, width=200)
    assert run(check_config(name, tmp_path / name), console) > 0
    assert str(tmp_path / name) in console.export_text()


def test_colour_road_masks_are_a_note_not_a_problem(tmp_path):
    root = tmp_path / "r"
    DeepGlobeRoadDataModule(root, synthetic=SyntheticRoads(**TINY)).setup()
    mask = root / "train" / "0001_mask.png"
    grey = np.asarray(Image.open(mask)) * 255
    Image.fromarray(np.stack([grey] * 3, -1)).save(mask)  # as DeepGlobe's originals: RGB 0/255
    train, val = check_dataset(DeepGlobeRoadDataModule(root, crop_size=64))
    assert not train.problems and not val.problems
    assert [n.message for n in train.notes] == ["1 label(s) stored in colour, read as grey"]
    assert train.pixels[1] > 0
