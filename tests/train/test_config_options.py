"""Every option of every config group composes and instantiates (lightning-hydra-template's way).

Each option is composed into the training job, and every building block the job makes from it is
instantiated: data module (nothing read from disk), network (on the meta device, no weights),
loss, optimizer and scheduler, trainer, loggers and callbacks. The other apps compose with every
data option. What the options *say* is left to the YAML; a typo in a key, a ``_target_`` that
moved, or an interpolation that no longer resolves fails here.
"""

from __future__ import annotations

from importlib import resources

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from lovaszseg.config.resolvers import register_resolvers
from lovaszseg.config.types import check_config_types

register_resolvers()

PICKED_GROUPS = (
    "data", "model", "loss", "optimizer", "scheduler", "trainer", "logger", "callbacks",
    "experiment", "hparams_search", "debug",
)  # fmt: skip


def options(group: str) -> list[str]:
    folder = resources.files("lovaszseg.conf").joinpath(group)
    return sorted(
        e.name.removesuffix(".yaml") for e in folder.iterdir() if e.name.endswith(".yaml")
    )


def compose_job(app: str, overrides: list[str], tmp_path) -> DictConfig:
    """The job's config as Hydra hands it over, its run and data folders under ``tmp_path``."""
    paths = [f"paths.output_dir={tmp_path}", f"paths.data_dir={tmp_path}"]
    with initialize_config_module("lovaszseg.conf", version_base="1.3"):
        cfg = compose(
            app,
            overrides=[*overrides, *(paths if app in ("train", "eval", "check") else [])],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    return cfg


def needs_absent_gpus(trainer_cfg: DictConfig) -> bool:
    devices = trainer_cfg.get("devices", 1)
    wanted = devices if isinstance(devices, int) else 1
    return trainer_cfg.get("accelerator") in ("gpu", "cuda") and torch.cuda.device_count() < wanted


def instantiate_job(cfg: DictConfig) -> None:
    check_config_types(cfg)
    data = instantiate(cfg.data)
    assert data.num_classes == cfg.data.num_classes
    loss = instantiate(cfg.loss)
    assert cfg.model.classes == (1 if loss.task == "binary" else data.num_classes)
    assert cfg.module.net == cfg.model and cfg.module.task == loss.task
    with torch.device("meta"):
        net = instantiate(cfg.model)
    optimizer = instantiate(cfg.optimizer)(params=[torch.nn.Parameter(torch.zeros(1))])
    if cfg.get("scheduler"):
        instantiate(cfg.scheduler)(optimizer=optimizer, total_iters=10)
    assert isinstance(net, torch.nn.Module)
    for name in ("logger", "callbacks"):
        for entry in (cfg.get(name) or {}).values():
            if entry is not None:
                instantiate(entry)
    if needs_absent_gpus(cfg.trainer):  # the config is right; this machine lacks the devices
        assert cfg.trainer._target_ == "pytorch_lightning.Trainer"
        return
    instantiate(cfg.trainer, logger=False, enable_checkpointing=False)


CASES = [
    pytest.param([f"{group}={option}"], id=f"{group}={option}")
    for group in PICKED_GROUPS
    for option in options(group)
]


@pytest.mark.parametrize("overrides", CASES)
def test_every_option_composes_and_instantiates(overrides, tmp_path):
    instantiate_job(compose_job("train", overrides, tmp_path))


def test_the_internal_groups_are_reached_by_the_picked_ones(tmp_path):
    """Loss terms and transform presets are chosen by loss and data options; each is used."""
    used = set()
    for group in ("loss", "data"):
        for option in options(group):
            cfg = compose_job("train", [f"{group}={option}"], tmp_path)
            used |= {f"{name.split('@')[0]}/{v}" for name, v in cfg.hydra.runtime.choices.items()}
    for internal in ("loss_term", "transform"):
        assert {f"{internal}/{option}" for option in options(internal)} <= used, internal


@pytest.mark.parametrize("data", options("data"))
@pytest.mark.parametrize("app", ["eval", "check"])
def test_eval_and_check_compose_with_every_data_option(app, data, tmp_path):
    overrides = [f"data={data}", *(["ckpt_path=best.ckpt"] if app == "eval" else [])]
    cfg = compose_job(app, overrides, tmp_path)
    instantiate(cfg.data)
    if app == "eval" and not needs_absent_gpus(cfg.trainer):
        instantiate(cfg.trainer, logger=False, enable_checkpointing=False)


@pytest.mark.parametrize(
    ("app", "overrides"),
    [("predict", ["ckpt_path=best.ckpt", "input_dir=images"]), ("export", ["ckpt_path=best.ckpt"])],
)
def test_predict_and_export_compose(app, overrides, tmp_path):
    cfg = compose_job(app, overrides, tmp_path)
    with open_dict(cfg):
        del cfg["hydra"]
    assert OmegaConf.to_container(cfg, resolve=True)["ckpt_path"] == "best.ckpt"
