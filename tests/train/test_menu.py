"""The menu around training, each through its config or real entry point: the model menu,
``compile``, loggers and callbacks, W&B run identity, the Optuna search, sweep folder names,
``--help``, the console commands and their shell completion."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import open_dict

from lovaszseg.config.resolvers import job_dirname
from lovaszseg.train import build_module
from tests.train.entry import metric_rows, results, run_dirs, sweep_jobs
from tests.train.test_config import LOSSES, compose_train

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SCRIPTS = {
    "lovaszseg-train": "lovaszseg.train:main",
    "lovaszseg-eval": "lovaszseg.eval:main",
    "lovaszseg-predict": "lovaszseg.predict:main",
    "lovaszseg-export": "lovaszseg.export:main",
    "lovaszseg-report": "lovaszseg.report:main",
    "lovaszseg-check": "lovaszseg.check:main",
    "lovaszseg-download": "lovaszseg.data.download:main",
}
MODELS = {
    "deeplabv3plus": "DeepLabV3Plus",
    "deeplabv3plus_mobilenetv2": "DeepLabV3Plus",
    "unet": "Unet",
    "fpn": "FPN",
    "linknet": "Linknet",
}


@pytest.mark.parametrize("name", MODELS)
def test_model_menu_builds_each_architecture_for_any_input_size(name):
    net = instantiate(compose_train(f"model={name}").model, classes=3).eval()
    assert type(net).__name__ == MODELS[name]
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 96)).shape == (1, 3, 64, 96)


def test_any_smp_encoder_by_name():
    cfg = compose_train("model=unet", "model.encoder_name=mobilenet_v2")
    assert type(instantiate(cfg.model, classes=1).encoder).__name__ == "MobileNetV2Encoder"


def test_imagenet_weights_without_network_fail_at_once_with_what_to_do(run_entry, tmp_path):
    unreachable = "http://127.0.0.1:9"  # the discard port: every connection is refused
    started = time.monotonic()
    proc = run_entry(
        "lovaszseg.train",
        "model=linknet",
        "model.encoder_weights=imagenet",
        check=False,
        env={
            "HF_HOME": str(tmp_path / "hf"),  # an empty cache
            "HTTPS_PROXY": unreachable,
            "HTTP_PROXY": unreachable,
            "https_proxy": unreachable,
            "http_proxy": unreachable,
            "NO_PROXY": "",
        },
    )
    elapsed = time.monotonic() - started
    assert proc.returncode != 0
    assert "model.encoder_weights=imagenet: could not download" in proc.stderr, proc.stderr
    assert "'resnet18'" in proc.stderr and "model.encoder_weights=null" in proc.stderr
    assert not list(tmp_path.glob("outputs/train/*/checkpoints"))
    assert elapsed < 120, elapsed


def test_compile_true_compiles_the_network_in_place_keeping_weight_names():
    module = build_module(compose_train("compile=true"))
    assert module.net._compiled_call_impl is not None
    assert list(module.state_dict()) == list(build_module(compose_train()).state_dict())


@pytest.mark.slow
def test_compiled_network_trains_and_saves_plain_weight_names(run_entry, tmp_path):
    # aot_eager captures the graph as inductor does (dynamo + AOTAutograd) without generating
    # C++, which takes many minutes on a shared 2-core CI machine
    run_entry(
        "lovaszseg.train", "compile=true", "compile_backend=aot_eager", "trainer.max_epochs=1",
        timeout=600,
    )  # fmt: skip
    (run,) = run_dirs(tmp_path)
    summary = results(run)
    assert summary["status"] == "completed" and summary["best"]["val/mIoU"] is not None
    state = torch.load(run / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"]
    assert state and not any("_orig_mod" in key for key in state)


def test_loggers_and_callbacks_are_config_options():
    assert set(compose_train("logger=tensorboard").logger) == {"csv", "tensorboard"}
    assert set(compose_train("logger=many").logger) == {"csv", "tensorboard", "wandb"}
    stopping = compose_train("callbacks=early_stopping").callbacks
    assert {"best_checkpoint", "precise_bn", "early_stopping"} <= set(stopping)
    assert (stopping.early_stopping.monitor, stopping.early_stopping.mode) == ("val/mIoU", "max")
    assert "lr_monitor" in compose_train().callbacks
    assert "lr_monitor" not in compose_train("~callbacks.lr_monitor").callbacks


def test_many_loggers_early_stopping_and_a_dropped_callback_in_one_run(run_entry, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_entry(
        "lovaszseg.train",
        "logger=many",
        "callbacks=early_stopping",
        "callbacks.early_stopping.stopping_threshold=0.0",  # any mIoU above 0 stops the run
        "~callbacks.lr_monitor",
        "trainer.max_epochs=3",
        env={"WANDB_MODE": "offline"},
    )
    (run,) = run_dirs(tmp_path)
    summary = results(run)
    assert (summary["status"], summary["final"]["epoch"]) == ("completed", 0)  # stopped early
    assert not any(column.startswith("lr-") for column in metric_rows(run)[0])
    (events,) = (run / "tensorboard").glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    assert {"val/mIoU", "train/loss_lovasz_hinge"} <= set(accumulator.Tags()["scalars"])
    assert list((run / "wandb").glob("offline-run-*/run-*.wandb"))


class FakeRun:
    def __init__(self, **init: object) -> None:
        self.init = init
        self.defined: dict[str, str] = {}

    def define_metric(self, name: str, **kwargs: object) -> None:
        self.defined[name] = str(kwargs.get("summary"))


def test_wandb_run_named_by_overrides_grouped_by_sweep_tagged_with_loss_and_data(
    monkeypatch, tmp_path
):
    import wandb

    created: list[FakeRun] = []

    def fake_init(**init: object) -> FakeRun:
        created.append(FakeRun(**init))
        return created[-1]

    monkeypatch.setattr(wandb, "init", fake_init)
    monkeypatch.setattr(wandb, "run", None)
    cfg = compose_train("logger=wandb", "loss=bce", "seed=2", hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.sweep.dir = "multirun/train/2026-01-02_03-04-05-000006"
        cfg.paths.output_dir = str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    try:
        logger = instantiate(cfg.logger.wandb)
        run = logger.experiment
    finally:
        HydraConfig.instance().cfg = None
    (fake,) = created
    assert run is fake
    assert fake.init["name"] == "loss=bce,seed=2"
    assert fake.init["group"] == "2026-01-02_03-04-05-000006"
    assert fake.init["tags"] == ["loss=bce", "data=synthetic_roads"]
    assert fake.defined["val/mIoU"] == "max"


def test_wandb_run_without_overrides_keeps_a_readable_name():
    cfg = compose_train("logger=wandb", hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.job.override_dirname = ""
        cfg.hydra.mode = RunMode.RUN
        cfg.paths.output_dir = "."
    HydraConfig.instance().set_config(cfg)
    try:
        logger = instantiate(cfg.logger.wandb)
    finally:
        HydraConfig.instance().cfg = None
    assert logger._wandb_init["name"] == "synthetic_roads-lovasz_hinge_bce-seed1"
    assert logger._wandb_init["group"] is None


def test_job_folders_are_named_by_overrides_and_filesystem_safe():
    assert job_dirname(3, "loss=bce,seed=2") == "3_loss=bce,seed=2"
    assert (
        job_dirname(12, "init_from=/runs/a b/last.ckpt,loss.terms.bce.weight=0.47531980423231657")
        == "12_init_from=_runs_a_b_last.ckpt,loss.terms.bce.weight=0.4753"
    )
    assert len(job_dirname(1, "x=" + "a" * 500)) == 120
    assert job_dirname(0, "") == "0"


def test_search_configs_search_both_weights_and_the_switch_epoch():
    for search, data, losses in (
        ("lovasz_hinge_bce", "synthetic_roads", ("lovasz_hinge", "bce")),
        ("lovasz_softmax_ce", "synthetic_voc", ("lovasz_softmax", "ce")),
    ):
        cfg = compose_train(f"hparams_search={search}", hydra_config=True)
        assert cfg.data._target_.endswith(
            "DeepGlobeRoadDataModule" if data == "synthetic_roads" else "VOCSegmentationDataModule"
        )
        sweeper = cfg.hydra.sweeper
        assert sweeper.direction == "maximize" and sweeper._target_.endswith("OptunaSweeper")
        assert set(sweeper.params) == {
            *(f"loss.terms.{t}.weight" for t in losses),
            "loss.switch_epoch",
        }
        assert sweeper.params["loss.switch_epoch"] == f"range(1, {cfg.trainer.max_epochs})"
        loss = instantiate(cfg.loss)
        assert loss.task == LOSSES[f"finetune_{losses[0].split('_')[1]}"][0]
        assert loss.terms[losses[1]].phase == "always"  # CE / BCE throughout, Lovász joins


@pytest.mark.slow
def test_three_trial_optuna_search_then_report_reads_the_sweep(run_entry, tmp_path):
    run_entry(
        "lovaszseg.train", "hparams_search=lovasz_hinge_bce", "hydra.sweeper.n_trials=3",
        "trainer.max_epochs=3", timeout=600,
    )  # fmt: skip
    jobs = sweep_jobs(tmp_path)
    assert len(jobs) == 3
    for job in jobs:  # named by the searched values, e.g. 0_...,loss.switch_epoch=2,loss.terms...
        assert "loss.switch_epoch=" in job.name and "/" not in job.name[len(str(job.parent)) :]
        values = dict(
            o.split("=", 1) for o in yaml.safe_load((job / ".hydra/overrides.yaml").read_text())
        )
        assert 1 <= int(values["loss.switch_epoch"]) <= 2
        assert 0.1 <= float(values["loss.terms.lovasz_hinge.weight"]) <= 1.0
        assert results(job)["status"] == "completed"
    sweep = jobs[0].parent
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    scores = {job: results(job)["best"]["val/mIoU"] for job in jobs}
    assert best["best_value"] == pytest.approx(max(scores.values()))

    report = subprocess.run(
        [str(BIN / "lovaszseg-report"), str(sweep)], capture_output=True, text=True, timeout=300
    )
    assert report.returncode == 0, report.stderr
    (search,) = yaml.safe_load((sweep / "report.json").read_text())["optuna"]
    assert search["trials"] == 3 and scores[Path(search["best_job"])] == max(scores.values())
    assert "## Optuna searches" in (sweep / "report.md").read_text()


@pytest.mark.parametrize("app", ["train", "eval", "predict", "export", "check"])
def test_help_says_what_the_app_does(app, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", f"lovaszseg.{app}", "--help"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"lovaszseg-{app}: ")
    assert "Usage: lovaszseg-" in proc.stdout


def test_train_help_lists_the_groups_a_user_picks_and_not_internal_ones(tmp_path):
    text = subprocess.run(
        [sys.executable, "-m", "lovaszseg.train", "--help"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    lines = {
        line.split()[0]: line for line in text.splitlines() if line.startswith("  ") and "=" in line
    }
    for group in ("data=", "model=", "loss=", "logger=", "callbacks=", "hparams_search=", "debug="):
        assert group in lines, group
    assert all(name in lines["loss="] for name in LOSSES)
    assert "linknet" in lines["model="] and "tensorboard" in lines["logger="]
    assert "loss_term" not in text and "paths=" not in text


def test_console_commands_are_declared_and_installed(tmp_path):
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert declared == SCRIPTS
    for name in SCRIPTS:
        assert (BIN / name).is_file(), f"{name} is not installed; run scripts/setup.sh"
    for name in ("lovaszseg-report", "lovaszseg-download", "lovaszseg-predict"):
        proc = subprocess.run(
            [str(BIN / name), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, (name, proc.stderr)


def test_bash_completion_of_the_console_command_lists_loss_options(tmp_path):
    script = (
        'eval "$(lovaszseg-train -sc install=bash)"\n'
        'COMP_LINE="lovaszseg-train loss=lovasz_"; COMP_POINT=${#COMP_LINE}\n'
        "COMP_WORDS=(lovaszseg-train loss=lovasz_); COMP_CWORD=1\n"
        "hydra_bash_completion\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) == {
        f"loss={name}" for name in LOSSES if name.startswith("lovasz_")
    }


def test_report_orders_named_job_folders_by_their_number(tmp_path):
    from lovaszseg.reporting.runs import find_run_dirs

    for name in ("10_loss=ce", "2_loss=bce", "0_loss=bce"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.csv").write_text("epoch\n")
    assert [p.name for p in find_run_dirs(tmp_path)] == ["0_loss=bce", "2_loss=bce", "10_loss=ce"]
