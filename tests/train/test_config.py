"""Config behaviour: loss terms, overrides, sweeps, launchers and the checks made at start-up.

(That every option of every group composes and instantiates: test_config_options.py.)
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from lovaszseg.config.resolvers import register_resolvers
from lovaszseg.config.types import check_config_types
from lovaszseg.data.datamodule import per_process_batch_size
from lovaszseg.module import SegmentationModule
from lovaszseg.objectives.compose import CompositeLoss
from lovaszseg.runs.resume import resolve_resume

register_resolvers()


def compose_train(*overrides: str, hydra_config: bool = False):
    with initialize_config_module("lovaszseg.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra_config)


LOSSES = {
    "bce": ("binary", {"bce": 1.0}, None),
    "ce": ("multiclass", {"ce": 1.0}, None),
    "lovasz_hinge": ("binary", {"lovasz_hinge": 1.0}, None),
    "lovasz_softmax": ("multiclass", {"lovasz_softmax": 1.0}, None),
    "lovasz_hinge_bce": ("binary", {"lovasz_hinge": 0.5, "bce": 0.5}, None),
    "lovasz_softmax_ce": ("multiclass", {"lovasz_softmax": 0.2, "ce": 0.8}, None),
    "finetune_hinge": ("binary", {"bce": 1.0, "lovasz_hinge": 1.0}, 6),
    "finetune_softmax": ("multiclass", {"ce": 1.0, "lovasz_softmax": 1.0}, 6),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_group_builds_its_named_weighted_terms(name):
    task, weights, switch = LOSSES[name]
    data = "synthetic_roads" if task == "binary" else "synthetic_voc"
    cfg = compose_train(f"loss={name}", f"data={data}", "trainer.max_epochs=12")
    loss = instantiate(cfg.loss)
    assert isinstance(loss, CompositeLoss)
    assert loss.task == task
    assert {n: t.weight for n, t in loss.terms.items()} == weights
    assert loss.switch_epoch == switch
    assert all(t.fn.ignore_index == 255 for t in loss.terms.values())


def test_term_weights_and_switch_epoch_are_overridable():
    cfg = compose_train("loss.terms.lovasz_hinge.weight=0.3", "loss.terms.bce.weight=0.7")
    loss = instantiate(cfg.loss)
    assert {n: t.weight for n, t in loss.terms.items()} == {"lovasz_hinge": 0.3, "bce": 0.7}
    cfg = compose_train("loss=finetune_hinge", "loss.switch_epoch=3")
    loss = instantiate(cfg.loss)
    assert loss.active_terms(2) == ["bce"] and loss.active_terms(3) == ["lovasz_hinge"]


def test_finetune_switches_halfway_through_debug_runs_too():
    cfg = compose_train("loss=finetune_softmax", "data=synthetic_voc", "debug=fast")
    assert cfg.trainer.max_epochs == 2
    assert instantiate(cfg.loss).switch_epoch == 1


def test_default_job_is_deeplab_mobilenet_on_synthetic_roads_without_downloads():
    cfg = compose_train(hydra_config=True)
    choices = cfg.hydra.runtime.choices
    assert (choices.data, choices.loss, choices.model) == (
        "synthetic_roads",
        "lovasz_hinge_bce",
        "deeplabv3plus_mobilenetv2",
    )
    assert cfg.model.encoder_weights is None
    assert cfg.model.encoder_name == "mobilenet_v2"
    assert cfg.model.encoder_output_stride == 16


def test_unknown_group_choice_lists_the_valid_options():
    with pytest.raises(MissingConfigException) as error:
        compose_train("loss=lovasz_hinge_bc")
    message = str(error.value)
    assert "lovasz_hinge_bce" in message and "finetune_softmax" in message


def test_misspelt_key_fails_at_composition():
    with pytest.raises(ConfigCompositionException, match="max_epoch"):
        compose_train("trainer.max_epoch=3")


@pytest.mark.parametrize(
    ("experiment", "data", "losses"),
    [
        ("roads_modes", "synthetic_roads", "bce,lovasz_hinge,lovasz_hinge_bce,finetune_hinge"),
        ("voc_modes", "synthetic_voc", "ce,lovasz_softmax,lovasz_softmax_ce,finetune_softmax"),
        (
            "roads_plateau_modes",
            "synthetic_roads",
            "bce,lovasz_hinge,lovasz_hinge_bce,finetune_hinge",
        ),
        (
            "voc_plateau_modes",
            "synthetic_voc",
            "ce,lovasz_softmax,lovasz_softmax_ce,finetune_softmax",
        ),
    ],
)
def test_mode_experiments_sweep_the_four_usage_modes(experiment, data, losses):
    cfg = compose_train(f"experiment={experiment}", hydra_config=True)
    assert cfg.hydra.runtime.choices.data == data
    assert cfg.hydra.sweeper.params.loss == losses


@pytest.mark.parametrize(("study", "lr_ratio"), [("roads", 4), ("voc", 10)])
def test_plateau_modes_continue_the_baselines_setting_with_a_lower_rate(study, lr_ratio):
    baseline = compose_train(f"experiment={study}_plateau")
    modes = compose_train(f"experiment={study}_plateau_modes")
    assert modes.data == baseline.data and modes.model == baseline.model
    assert modes.optimizer.lr == pytest.approx(baseline.optimizer.lr / lr_ratio)
    # the plateau rule reads the baseline's last validation at its last epoch; modes every epoch
    every = baseline.trainer.get("check_val_every_n_epoch", 1)
    assert baseline.trainer.max_epochs % every == 0
    assert modes.trainer.get("check_val_every_n_epoch", 1) == 1
    assert modes.trainer.max_epochs < baseline.trainer.max_epochs
    # phase 1 decays faster to reach its plateau; the modes keep PaddleSeg's poly 0.9
    assert (baseline.scheduler.power, modes.scheduler.power) == (2.0, 0.9)
    if study == "roads":
        assert modes.callbacks.road_width_iou.thin_max == 3


def test_slurm_launcher_runs_one_task_per_gpu_and_lightning_does_not_requeue():
    cfg = compose_train(
        "hydra/launcher=slurm", "trainer=slurm", "trainer.devices=8", hydra_config=True
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (8, 8, 1)
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.sync_batchnorm
    (plugin,) = [p for p in cfg.trainer.plugins if p._target_.endswith("SLURMEnvironment")]
    assert plugin.auto_requeue is False


def test_slurm_launcher_asks_for_no_gpu_for_a_cpu_run():
    cfg = compose_train(
        "hydra/launcher=slurm",
        "trainer=slurm",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        hydra_config=True,
    )
    assert (cfg.hydra.launcher.tasks_per_node, cfg.hydra.launcher.gpus_per_node) == (2, None)


def test_config_types_are_checked_with_the_key_and_the_type():
    check_config_types(compose_train())
    check_config_types(compose_train("loss=finetune_softmax", "data=synthetic_voc"))
    cfg = compose_train(
        "data.batch_size=abc", "trainer.max_epochs=abc", "loss.terms.lovasz_hinge.weight=abc"
    )
    with pytest.raises(ValueError) as error:
        check_config_types(cfg)
    assert str(error.value) == (
        "wrong type in the config: data.batch_size='abc': expected an integer; "
        "trainer.max_epochs='abc': expected an integer; "
        "loss.terms.lovasz_hinge.weight='abc': expected a number"
    )
    with pytest.raises(ValueError, match=r"auto_resume='yes': expected true or false"):
        check_config_types(compose_train("auto_resume=yes"))
    with pytest.raises(ValueError, match=r"trainer.max_epochs=2.5: expected an integer"):
        check_config_types(compose_train("trainer.max_epochs=2.5"))


def test_debug_preset_gives_every_process_two_samples():
    assert compose_train("debug=fast").data.batch_size == 2
    cfg = compose_train("debug=fast", "trainer=ddp", "trainer.devices=2")
    assert cfg.data.batch_size == 4


def module_before_fit(net: nn.Module, per_process: int, world_size: int) -> SegmentationModule:
    """A module attached to a stand-in for a Trainer of ``world_size`` processes."""
    module = SegmentationModule(net=net, task="binary", class_names=["background", "road"])
    datamodule = SimpleNamespace(batch_size=per_process * world_size)
    module._trainer = SimpleNamespace(datamodule=datamodule, world_size=world_size)
    return module


def test_batchnorm_needs_two_samples_per_process():
    with_batchnorm = nn.Sequential(nn.Conv2d(3, 1, 1), nn.BatchNorm2d(1))
    module_before_fit(with_batchnorm, per_process=2, world_size=2).setup("fit")
    module_before_fit(nn.Conv2d(3, 1, 1), per_process=1, world_size=2).setup("fit")
    with pytest.raises(ValueError) as error:
        module_before_fit(with_batchnorm, per_process=1, world_size=2).setup("fit")
    message = str(error.value)
    assert "data.batch_size=2" in message and "2 process(es)" in message
    assert "use data.batch_size=4" in message


def test_constant_schedule_is_an_empty_option():
    assert not compose_train("scheduler=constant").scheduler
    assert compose_train().scheduler._target_.endswith("PolynomialLR")


def test_ddp_trainers_sync_batchnorm():
    for trainer in ("ddp", "ddp_spawn"):
        cfg = compose_train(f"trainer={trainer}")
        assert cfg.trainer.strategy == trainer and cfg.trainer.sync_batchnorm is True


def test_wandb_logger_is_offline_and_keeps_csv():
    cfg = compose_train("logger=wandb")
    assert set(cfg.logger) == {"csv", "wandb"}
    assert cfg.logger.wandb.offline is True
    assert OmegaConf.select(cfg, "logger.wandb.log_model") is False


def test_binary_loss_on_21_classes_is_refused():
    cfg = compose_train("data=synthetic_voc", "loss=lovasz_hinge")
    with pytest.raises(ValueError, match=r"the loss is binary .* 21 classes .* loss=ce"):
        SegmentationModule(net=nn.Conv2d(3, 1, 1), task="binary", class_names=cfg.data.class_names)
    SegmentationModule(net=nn.Conv2d(3, 2, 1), task="multiclass", class_names=["a", "b"])


def test_global_batch_is_split_evenly_across_ranks():
    assert per_process_batch_size(24, 4) == 6
    with pytest.raises(ValueError, match=r"batch_size=24 .* across 5 processes"):
        per_process_batch_size(24, 5)


def test_the_network_has_one_logit_for_a_binary_loss_and_one_per_class_otherwise():
    assert compose_train().model.classes == 1
    assert compose_train("data=synthetic_voc", "loss=ce").model.classes == 21


def test_resume_resolution(tmp_path: Path):
    assert resolve_resume(None, auto_resume=True, output_dir=tmp_path) is None
    with pytest.raises(ValueError, match=r"hydra\.run\.dir=<run dir> ckpt_path=last"):
        resolve_resume("last", auto_resume=False, output_dir=tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    torch.save({"state_dict": {}}, last)  # a whole checkpoint (a torn one is refused)
    assert resolve_resume("last", auto_resume=False, output_dir=tmp_path) == str(last)
    assert resolve_resume(None, auto_resume=True, output_dir=tmp_path) == str(last)
    assert resolve_resume(None, auto_resume=False, output_dir=tmp_path) is None
    with pytest.raises(ValueError, match="no such checkpoint"):
        resolve_resume(str(tmp_path / "nope.ckpt"), auto_resume=False, output_dir=tmp_path)
