"""DataModules: the batch contract, the configs, and errors that name the file."""

from __future__ import annotations

from pathlib import Path

import hydra.utils
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from PIL import Image

from lovaszseg.data import DeepGlobeRoadDataModule, EvalPreset, VOCSegmentationDataModule
from lovaszseg.data.deepglobe import binarise_road_label
from lovaszseg.data.files import Sample
from lovaszseg.data.synthetic import SyntheticRoads, SyntheticVOC

TINY = {"num_train": 4, "num_val": 3, "image_size": 96}


def data_config(name: str, data_dir: Path, **overrides):
    """``data=<name>`` as the training job composes it, with ``data.<key>=<value>`` overrides."""
    with initialize_config_module("lovaszseg.conf", version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"data={name}",
                f"paths.data_dir={data_dir}",
                *(f"data.{k}={v}" for k, v in overrides.items()),
            ],
        )
    return cfg.data


@pytest.mark.parametrize(
    "name", ["synthetic_roads", "synthetic_voc", "mini_deepglobe", "deepglobe", "voc2012"]
)
def test_every_data_config_has_the_shared_keys(name, tmp_path):
    cfg = data_config(name, tmp_path)
    for key in (
        "_target_",
        "root",
        "num_classes",
        "ignore_index",
        "class_names",
        "batch_size",
        "num_workers",
        "crop_size",
    ):
        assert key in cfg, f"{name}.yaml lacks {key}"
    assert cfg.root == str(tmp_path / name)
    assert len(cfg.class_names) == cfg.num_classes and cfg.ignore_index == 255
    assert cfg.crop_size % 32 == 0
    dm = hydra.utils.instantiate(cfg)  # builds without touching the disk
    assert dm.num_classes == cfg.num_classes and dm.class_names == list(cfg.class_names)


@pytest.mark.parametrize(
    ("name", "classes"), [("synthetic_roads", {0, 1}), ("synthetic_voc", set(range(21)))]
)
def test_batches_follow_the_contract(name, classes, tmp_path):
    synthetic = TINY if name == "synthetic_roads" else {**TINY, "image_size": [80, 112]}
    cfg = data_config(name, tmp_path, crop_size=64, batch_size=2, val_batch_size=3)
    cfg.synthetic = {**cfg.synthetic, **synthetic}
    dm = hydra.utils.instantiate(cfg)
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    assert train["image"].shape == (2, 3, 64, 64) and train["image"].dtype == torch.float32
    assert train["mask"].shape == (2, 64, 64) and train["mask"].dtype == torch.int64
    assert set(train["mask"].unique().tolist()) <= classes | {255}
    assert len(train["name"]) == 2 and all(isinstance(n, str) for n in train["name"])
    assert train["image"].min() >= -1.0 and train["image"].max() <= 1.0  # mean = std = 0.5
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape[0] == 3 and min(val["image"].shape[-2:]) >= 80  # whole images
    assert val["image"].shape[-2:] == val["mask"].shape[-2:]
    assert len(dm.train_dataloader()) == 2  # 4 images, batch 2, the last incomplete one dropped


def test_eval_padding_is_ignored_and_images_are_whole(tmp_path):
    dm = DeepGlobeRoadDataModule(
        tmp_path / "r",
        crop_size=64,
        batch_size=2,
        synthetic=SyntheticRoads(**{**TINY, "image_size": 80}),
        eval_transform=EvalPreset(pad_to=96),
    )
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    assert batch["mask"].shape[-2:] == (96, 96)  # 80 padded up to pad_to
    assert (batch["mask"][:, 80:, :] == 255).all() and (batch["mask"][:, :, 80:] == 255).all()
    assert (batch["image"][:, :, 80:, :] == 0).all()  # padded with the mean, normalised to 0
    assert (batch["mask"][:, :80, :80] != 255).all()


def test_workers_augment_differently_and_reproducibly(tmp_path):
    dm = DeepGlobeRoadDataModule(
        tmp_path / "r",
        crop_size=64,
        batch_size=1,
        num_workers=2,
        synthetic=SyntheticRoads(**{**TINY, "num_train": 2}),
    )
    dm.setup()

    def epoch(seed):
        torch.manual_seed(seed)
        loader = torch.utils.data.DataLoader(
            dm.train_dataset,
            batch_size=1,
            num_workers=2,
            worker_init_fn=dm.train_dataloader().worker_init_fn,
        )
        return [b["image"] for b in loader]

    first, again, other = epoch(0), epoch(0), epoch(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_missing_root_fails_before_training_with_the_path(tmp_path):
    dm = DeepGlobeRoadDataModule(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=str(tmp_path / "nowhere")):
        dm.setup()
    with pytest.raises(ValueError, match="nowhere"):
        VOCSegmentationDataModule(tmp_path / "nowhere").setup()


def test_listed_files_that_do_not_exist_are_named_with_their_line(tmp_path):
    root = tmp_path / "r"
    DeepGlobeRoadDataModule(root, synthetic=SyntheticRoads(**TINY)).setup()
    (root / "train" / "0002_mask.png").unlink()
    with (root / "val.txt").open("a") as f:
        f.write("val/ghost_sat.jpg|val/ghost_mask.png\n")
    with pytest.raises(ValueError, match="3 listed file") as error:
        DeepGlobeRoadDataModule(root).setup()
    message = str(error.value)
    assert "0002_mask.png (listed at" in message and "train.txt:3" in message
    assert "ghost_sat.jpg" in message and "val.txt:4" in message


def test_malformed_list_line_is_named(tmp_path):
    root = tmp_path / "r"
    DeepGlobeRoadDataModule(root, synthetic=SyntheticRoads(**TINY)).setup()
    (root / "val.txt").write_text("val/0000_sat.jpg val/0000_mask.png\n")
    with pytest.raises(ValueError, match=r"val\.txt:1: expected 'image\|label'"):
        DeepGlobeRoadDataModule(root).setup()


@pytest.mark.parametrize("num_workers", [0, 1])
def test_undecodable_image_during_loading_names_the_file(tmp_path, num_workers):
    root = tmp_path / "r"
    dm = DeepGlobeRoadDataModule(
        root, batch_size=4, crop_size=64, num_workers=num_workers, synthetic=SyntheticRoads(**TINY)
    )
    dm.setup()
    broken = root / "train" / "0001_sat.jpg"
    broken.write_bytes(broken.read_bytes()[:200])  # truncated
    with pytest.raises(ValueError, match=r"cannot decode .*0001_sat\.jpg"):
        list(dm.train_dataloader())


def test_voc_refuses_rgb_labels_and_out_of_range_values(tmp_path):
    root = tmp_path / "v"
    dm = VOCSegmentationDataModule(
        root, synthetic=SyntheticVOC(**{**TINY, "num_train": 2, "num_val": 1})
    )
    dm.setup()
    label_path = dm.train_dataset.samples[0].label
    label = np.asarray(Image.open(label_path))
    Image.fromarray(np.stack([label] * 3, -1)).save(label_path)
    with pytest.raises(ValueError, match="is an RGB image"):
        dm.train_dataset.load(0)
    bad = label.copy()
    bad[0, 0] = 40
    Image.fromarray(bad, mode="L").save(label_path)
    with pytest.raises(ValueError, match=r"holds values \[40\]; expected 0\.\.20 or 255"):
        dm.train_dataset.load(0)


def test_voc_sbd_needs_the_augmented_labels(tmp_path):
    root = tmp_path / "v"
    VOCSegmentationDataModule(
        root, synthetic=SyntheticVOC(**{**TINY, "num_train": 2, "num_val": 1})
    ).setup()
    with pytest.raises(ValueError, match="SegmentationClassAug"):
        VOCSegmentationDataModule(root, sbd=True).setup()
    voc = root / "VOCdevkit" / "VOC2012"
    (voc / "SegmentationClassAug").symlink_to(voc / "SegmentationClass")
    names = (voc / "ImageSets" / "Segmentation" / "train.txt").read_text()
    (voc / "ImageSets" / "Segmentation" / "trainaug.txt").write_text(names + names)
    dm = VOCSegmentationDataModule(root, sbd=True)
    dm.setup()
    assert len(dm.train_dataset) == 4 and "SegmentationClassAug" in str(
        dm.train_dataset.samples[0].label
    )


def test_road_labels_are_binarised_defensively():
    sample = Sample("x", Path("x.jpg"), Path("x.png"))
    zero_one = np.array([[0, 1], [1, 0]], np.uint8)
    assert (binarise_road_label(zero_one, sample) == zero_one).all()
    jpeg_ish = np.array([[3, 250], [131, 120]], np.uint8)
    assert binarise_road_label(jpeg_ish, sample).tolist() == [[0, 1], [1, 0]]
    rgb = np.stack([jpeg_ish * 0, jpeg_ish, jpeg_ish], -1)
    assert binarise_road_label(rgb, sample).tolist() == [[0, 1], [1, 0]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 3, "class_names": ["a", "b", "c"]}, "binary"),
        ({"class_names": ["only"]}, "class_names has 1"),
        ({"ignore_index": 1}, "collides"),
        ({"layout": "zip"}, "layout"),
        ({"crop_size": 769}, "multiple of the encoder stride"),
    ],
)
def test_bad_settings_are_refused_by_name(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        DeepGlobeRoadDataModule(tmp_path, **kwargs)
