"""Synthetic stand-ins: written in the real layouts, deterministic, cached, regenerated on change."""

from __future__ import annotations

import ast
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from PIL import Image

import lovaszseg
from lovaszseg.data import DeepGlobeRoadDataModule, VOCSegmentationDataModule
from lovaszseg.data.synthetic import SyntheticRoads, SyntheticVOC
from lovaszseg.data.synthetic.cache import MANIFEST, ensure_generated
from lovaszseg.data.synthetic.roads import render_road_scene, road_settings
from lovaszseg.data.synthetic.voc import render_voc_scene, voc_settings
from lovaszseg.data.voc_classes import voc_palette

TINY_ROADS = {"num_train": 6, "num_val": 2, "image_size": 128}
TINY_VOC = {"num_train": 4, "num_val": 2, "image_size": [96, 128]}


def roads(root, **synthetic) -> DeepGlobeRoadDataModule:
    dm = DeepGlobeRoadDataModule(
        root, crop_size=64, batch_size=2, synthetic=SyntheticRoads(**{**TINY_ROADS, **synthetic})
    )
    dm.setup()
    return dm


def voc(root, **synthetic) -> VOCSegmentationDataModule:
    dm = VOCSegmentationDataModule(
        root, crop_size=64, batch_size=2, synthetic=SyntheticVOC(**{**TINY_VOC, **synthetic})
    )
    dm.setup()
    return dm


def test_roads_are_written_as_minideepglobe_list_files(tmp_path):
    dm = roads(tmp_path / "r")
    lines = (tmp_path / "r" / "train.txt").read_text().splitlines()
    assert lines[0] == "train/0000_sat.jpg|train/0000_mask.png"
    assert len(lines) == 6 and len((tmp_path / "r" / "val.txt").read_text().splitlines()) == 2
    label = np.asarray(Image.open(tmp_path / "r" / "train" / "0000_mask.png"))
    assert label.shape == (128, 128) and set(np.unique(label)) == {0, 1}
    coverage = np.mean([dm.train_dataset.load(i)[1].mean() for i in range(6)])
    assert 0.025 < coverage < 0.08  # DeepGlobe's roads are ~4.5% of pixels


def test_roads_original_layout_has_jpeg_like_masks_and_a_seeded_split(tmp_path):
    dm = roads(tmp_path / "o", layout="original")
    masks = sorted((tmp_path / "o" / "train").glob("*_mask.png"))
    assert len(masks) == 8 and len(list((tmp_path / "o" / "train").glob("*_sat.jpg"))) == 8
    raw = np.concatenate([np.asarray(Image.open(m)).ravel() for m in masks])
    assert raw.max() == 255 and np.isin(raw, [0, 255]).mean() < 1  # near-binary, as the originals
    assert len(dm.train_dataset) == 6 and len(dm.val_dataset) == 2
    train = {s.name for s in dm.train_dataset.samples}
    assert train.isdisjoint(s.name for s in dm.val_dataset.samples)
    again = DeepGlobeRoadDataModule(
        tmp_path / "o", synthetic=SyntheticRoads(**TINY_ROADS, layout="original")
    )
    again.setup()
    assert {s.name for s in again.train_dataset.samples} == train
    assert set(np.unique(dm.train_dataset.load(0)[1])) <= {0, 1}


def test_generation_is_deterministic_cached_and_redone_when_settings_change(tmp_path, caplog):
    roads(tmp_path / "a")
    roads(tmp_path / "b")
    first = (tmp_path / "a" / "train" / "0003_sat.jpg").read_bytes()
    assert first == (tmp_path / "b" / "train" / "0003_sat.jpg").read_bytes()
    stamp = (tmp_path / "a" / MANIFEST).stat().st_mtime_ns
    roads(tmp_path / "a")  # cached: nothing rewritten
    assert (tmp_path / "a" / MANIFEST).stat().st_mtime_ns == stamp
    roads(tmp_path / "a", seed=1)
    assert "seed: 0 -> 1" in caplog.text and "num_train" not in caplog.text
    assert (tmp_path / "a" / "train" / "0003_sat.jpg").read_bytes() != first
    assert not list(tmp_path.glob(".a.*-*"))  # no temporary or old copies left behind


def test_a_non_empty_root_without_manifest_is_read_not_overwritten(tmp_path):
    roads(tmp_path / "r")
    (tmp_path / "r" / MANIFEST).unlink()
    dm = roads(tmp_path / "r", seed=5)
    assert not (tmp_path / "r" / MANIFEST).exists() and len(dm.train_dataset) == 6


def test_voc_is_written_as_vocdevkit_with_palette_labels_and_void_bands(tmp_path):
    dm = voc(tmp_path / "v")
    voc_dir = tmp_path / "v" / "VOCdevkit" / "VOC2012"
    names = (voc_dir / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    assert len(names) == 4 and (voc_dir / "JPEGImages" / f"{names[0]}.jpg").is_file()
    label = Image.open(voc_dir / "SegmentationClass" / f"{names[0]}.png")
    assert label.mode == "P" and label.getpalette()[: 21 * 3] == voc_palette()[: 21 * 3]
    values = np.concatenate([dm.train_dataset.load(i)[1].ravel() for i in range(4)])
    assert set(np.unique(values)) - {255} <= set(range(21))
    assert (values == 255).any() and (values == 0).any() and ((values > 0) & (values < 21)).any()
    sizes = {dm.train_dataset.load(i)[0].shape for i in range(4)}
    assert len(sizes) > 1 and all(96 <= h <= 128 and 96 <= w <= 128 for h, w, _ in sizes)


def test_palette_matches_vocs_known_colours():
    palette = voc_palette()
    assert palette[3:6] == [128, 0, 0] and palette[15 * 3 : 16 * 3] == [192, 128, 128]
    assert palette[255 * 3 : 256 * 3] == [224, 224, 192]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"difficulty": "brutal"}, "unknown difficulty 'brutal'"),
        ({"tree_densty": 1.0}, "tree_densty"),
        ({"layout": "zip"}, "layout"),
        ({"num_train": 0}, "num_train"),
        ({"road_width": [8, 4]}, r"road_width must be a \[min, max\] pair"),
        ({"label_noise": -0.1}, "label_noise must not be negative"),
        ({"contrast": "high"}, "contrast must be like 1.0, got 'high'"),
    ],
)
def test_bad_generator_settings_are_refused_by_name(settings, message):
    with pytest.raises(ValueError, match=message):
        road_settings(settings)


def test_hard_roads_are_thinner_fainter_and_noisier_than_easy():
    def stats(difficulty):
        knobs = road_settings({"difficulty": difficulty})
        rng = np.random.default_rng(0)
        scenes = [render_road_scene(rng, 192, knobs)[:2] for _ in range(6)]
        contrast = []
        for image, label in scenes:
            grey = image.mean(-1)
            contrast.append(abs(grey[label == 1].mean() - grey[label == 0].mean()))
        return np.mean(contrast), np.mean([label.mean() for _, label in scenes])

    easy_contrast, easy_cover = stats("easy")
    hard_contrast, hard_cover = stats("hard")
    assert hard_contrast < 0.7 * easy_contrast
    assert 0.02 < hard_cover < 0.08 and 0.02 < easy_cover < 0.08


def test_hard_voc_objects_are_smaller_and_more_numerous():
    def stats(difficulty):
        knobs = voc_settings({"difficulty": difficulty})
        rng = np.random.default_rng(0)
        labels = [render_voc_scene(rng, (160, 160), knobs)[1] for _ in range(8)]
        classes = [len(set(np.unique(label)) - {0, 255}) for label in labels]
        return np.mean([(label % 255 > 0).mean() for label in labels]), np.mean(classes)

    easy_area, _ = stats("easy")
    hard_area, hard_classes = stats("hard")
    assert hard_area < easy_area and hard_classes >= 2


def test_knobs_override_the_preset_and_null_keeps_it():
    knobs = road_settings({"difficulty": "hard", "thin_fraction": 0.9, "contrast": None})
    assert knobs["thin_fraction"] == 0.9 and knobs["contrast"] == 0.6
    assert road_settings({"difficulty": None})["tree_density"] == 0.0  # null: easy
    voc = voc_settings({"difficulty": "medium", "object_scale": [0.1, 0.2], "image_size": 64})
    assert voc["object_scale"] == (0.1, 0.2) and voc["image_size"] == (64, 64) and voc["overlap"]


def test_concurrent_runs_generate_once_and_never_see_a_partial_root(tmp_path):
    calls = []

    def write(directory):
        calls.append(directory)
        time.sleep(0.2)
        (directory / "data.txt").write_text("complete")

    def generate_then_read():
        ensure_generated(tmp_path / "root", "toy", {"seed": 0}, write)
        return (tmp_path / "root" / "data.txt").read_text()

    with ThreadPoolExecutor(3) as pool:
        seen = list(pool.map(lambda _: generate_then_read(), range(3)))
    assert seen == ["complete"] * 3 and len(calls) == 1


def synthetic_config(name: str, data_dir: Path, *overrides: str):
    with initialize_config_module("lovaszseg.conf", version_base="1.3"):
        cfg = compose("train", [f"data={name}", f"paths.data_dir={data_dir}", *overrides])
    return cfg.data


@pytest.mark.parametrize(
    ("name", "generator"), [("synthetic_roads", SyntheticRoads), ("synthetic_voc", SyntheticVOC)]
)
def test_the_configs_build_the_generator_and_its_knobs_override_as_keys(name, generator, tmp_path):
    cfg = synthetic_config(
        name, tmp_path, "data.synthetic.num_train=5", "data.synthetic.difficulty=hard"
    )
    dm = instantiate(cfg)
    assert type(dm.synthetic) is generator and dm.synthetic.split_sizes == (5, 32)
    complete = road_settings if name == "synthetic_roads" else voc_settings
    assert dm.synthetic.settings == complete({"num_train": 5, "difficulty": "hard"})


def test_the_roads_original_layout_is_split_as_generated(tmp_path):
    cfg = synthetic_config(
        "synthetic_roads",
        tmp_path,
        "data.layout=original",
        "data.synthetic.layout=original",
        "data.synthetic.num_train=7",
        "data.synthetic.num_val=3",
    )
    assert instantiate(cfg).split_sizes == [7, 3]  # not the configured 800 / 200 of the originals


def test_settings_without_a_generator_are_refused_by_key(tmp_path):
    with pytest.raises(
        ValueError, match=r"data\.synthetic has settings \['num_train', 'seed'\] but no _target_"
    ):
        DeepGlobeRoadDataModule(tmp_path / "r", synthetic={"seed": 0, "num_train": 4})


def test_a_target_mapping_is_built_when_the_data_is_instantiated_non_recursively(tmp_path):
    cfg = synthetic_config("synthetic_voc", tmp_path, "data.synthetic.num_val=2")
    dm = instantiate(cfg, _recursive_=False)
    assert type(dm.synthetic) is SyntheticVOC and dm.synthetic.split_sizes == (96, 2)


def test_the_real_data_modules_import_nothing_of_the_generators():
    package = Path(lovaszseg.__file__).parent
    readers = [*sorted((package / "data").glob("*.py")), package / "callbacks" / "width_iou.py"]
    for path in readers:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.startswith("lovaszseg.data.synthetic") for n in names), path
