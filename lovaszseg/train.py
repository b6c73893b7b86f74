"""``python -m lovaszseg.train``: compose the config, build data / model / loss / trainer, fit.

The entry point stays thin: building blocks come from the config (``_target_``), the checks that
must fail *before* training live in :func:`check_loss_fits_data` and :func:`resolve_resume`,
and the run's summary is written by :class:`lovaszseg.callbacks.results.ResultsWriter` inside the
training process. Returns the best ``val/mIoU`` so Hydra sweepers can optimise it.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lovaszseg.callbacks.precise_bn import batchnorm_layers
from lovaszseg.callbacks.results import ResultsWriter, read_results
from lovaszseg.config.job import group_choices, in_multirun
from lovaszseg.config.relaunch import relaunches_script
from lovaszseg.config.resolvers import register_resolvers
from lovaszseg.config.types import check_config_types
from lovaszseg.module import SegmentationModule, load_checkpoint, output_channels
from lovaszseg.objectives.compose import CompositeLoss
from lovaszseg.reporting.grouping import loss_of_checkpoint
from lovaszseg.runs.iou_table import print_iou_table

log = logging.getLogger(__name__)
register_resolvers()

RESULTS_FILE = "results.json"


def check_loss_fits_data(
    task: str, num_classes: int, loss_name: str | None, data_name: str | None
) -> None:
    """A binary loss (one logit) needs 2 classes; anything else needs at least 2."""
    if task == "binary" and num_classes != 2:
        raise ValueError(
            f"loss={loss_name} is a binary loss (one logit channel) but data={data_name} has "
            f"{num_classes} classes; use a multi-class loss (ce, lovasz_softmax, "
            "lovasz_softmax_ce, finetune_softmax) for this data"
        )
    if num_classes < 2:
        raise ValueError(f"data={data_name}: num_classes must be >= 2, got {num_classes}")


def per_rank_batch_size(global_batch_size: int, world_size: int) -> int:
    """``data.batch_size`` is global (as in PaddleSeg's configs); each rank loads its share."""
    if global_batch_size % world_size:
        raise ValueError(
            f"data.batch_size={global_batch_size} is the global batch and must divide evenly "
            f"across {world_size} processes (trainer.devices x trainer.num_nodes)"
        )
    return global_batch_size // world_size


def has_batchnorm(model_cfg: DictConfig, out_channels: int) -> bool:
    """Whether the configured network holds BatchNorm layers, built on the meta device (no
    weights are allocated and nothing is initialised)."""
    net_config = OmegaConf.to_container(model_cfg, resolve=True) | {"classes": out_channels}
    with torch.device("meta"):
        net = instantiate(net_config)
    return bool(batchnorm_layers(net))


def check_batchnorm_batch(per_process: int, world_size: int, batchnorm: bool) -> None:
    """BatchNorm cannot train on one sample per process (no variance within the batch)."""
    if batchnorm and per_process < 2:
        raise ValueError(
            f"data.batch_size={per_process * world_size} is the global batch: over {world_size} "
            f"process(es) each trains on {per_process} sample(s), and the network's BatchNorm "
            f"needs at least 2; use data.batch_size={2 * world_size} or more"
        )


def check_sweep_is_multirun(experiment: str | None) -> None:
    """An experiment that defines a sweep (the usage modes) means nothing as one run."""
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    params = dict(hydra_cfg.sweeper.get("params") or {})
    chosen = {o.split("=", 1)[0].lstrip("+~") for o in hydra_cfg.overrides.task}
    unchosen = sorted(set(params) - chosen)
    if not in_multirun() and unchosen:
        swept = " ".join(f"{key}={params[key]}" for key in unchosen)
        raise ValueError(
            f"experiment={experiment} is a sweep ({swept}): add -m to run it all, or choose "
            f"one, e.g. {unchosen[0]}={str(params[unchosen[0]]).split(',')[0]}"
        )


def resolve_resume(ckpt_path: str | None, auto_resume: bool, output_dir: Path) -> str | None:
    """``ckpt_path=last`` -> this run dir's last.ckpt (must exist); ``auto_resume`` -> it if present."""
    last = output_dir / "checkpoints" / "last.ckpt"
    if ckpt_path == "last":
        if not last.is_file():
            raise ValueError(
                f"ckpt_path=last but {last} does not exist; to resume a run, point Hydra at its "
                "directory: hydra.run.dir=<run dir> ckpt_path=last"
            )
        return str(last)
    if ckpt_path is not None:
        if not Path(ckpt_path).is_file():
            raise ValueError(f"ckpt_path={ckpt_path}: no such checkpoint file")
        return str(ckpt_path)
    return str(last) if auto_resume and last.is_file() else None


def refuse_relaunch_in_multirun(trainer: pl.Trainer) -> None:
    """Lightning's ``ddp`` re-executes the command line, which would nest a sweep inside each job."""
    if in_multirun() and relaunches_script(trainer):
        raise ValueError(
            "trainer=ddp relaunches the script and cannot run inside a Hydra multirun; use "
            "trainer=ddp_spawn for sweeps on one node, or hydra/launcher=slurm (one task per GPU)"
        )


def sync_batchnorm_supported(trainer_cfg: DictConfig) -> bool:
    """SyncBatchNorm is GPU-only in PyTorch; CPU (gloo) ranks keep per-rank BatchNorm statistics."""
    accelerator = trainer_cfg.get("accelerator", "auto")
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    return accelerator in ("gpu", "cuda")


def best_checkpoints_first(callbacks: list[pl.Callback]) -> list[pl.Callback]:
    """Checkpoint callbacks that monitor a metric before those that do not (order otherwise kept).

    Every checkpoint file stores every callback's state, written when its own callback saves. If
    last.ckpt were saved before the best-checkpoint callback took in the epoch, it would carry
    the best score of one validation earlier, and after a resume a worse epoch could replace
    best.ckpt.
    """
    return sorted(callbacks, key=lambda c: isinstance(c, ModelCheckpoint) and c.monitor is None)


def build_trainer(cfg: DictConfig, loggers: list[Any], results: ResultsWriter) -> pl.Trainer:
    """The configured Trainer with the configured callbacks plus the results writer."""
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    callbacks = best_checkpoints_first(callbacks)
    sync_batchnorm = bool(cfg.trainer.get("sync_batchnorm"))
    if sync_batchnorm and not sync_batchnorm_supported(cfg.trainer):
        log.info("SyncBatchNorm needs GPUs; CPU ranks keep their own BatchNorm statistics")
        sync_batchnorm = False
    trainer = instantiate(
        cfg.trainer, callbacks=[*callbacks, results], logger=loggers, sync_batchnorm=sync_batchnorm
    )
    refuse_relaunch_in_multirun(trainer)
    return trainer


def build_loggers(cfg: DictConfig) -> list[Any]:
    return [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]


def build_module(cfg: DictConfig, loss: CompositeLoss, datamodule: Any) -> SegmentationModule:
    """Network sized for the task (1 logit for binary), optionally from another run's weights."""
    net_config = OmegaConf.to_container(cfg.model, resolve=True)
    net_config["classes"] = output_channels(loss.task, datamodule.num_classes)
    module = SegmentationModule(
        net=instantiate(net_config),
        task=loss.task,
        class_names=datamodule.class_names,
        ignore_index=datamodule.ignore_index,
        loss=loss,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        net_config=net_config,
    )
    if cfg.get("compile"):
        # in place: checkpoints keep the plain network's weight names
        module.net.compile(backend=cfg.get("compile_backend", "inductor"))
    if cfg.init_from:
        module.load_net_weights(load_checkpoint(cfg.init_from)["state_dict"], source=cfg.init_from)
        log.info("initialised the network from %s", cfg.init_from)
    return module


def train(cfg: DictConfig) -> float | None:
    """Fit one model as configured; returns the best ``val/mIoU`` (rank zero) or ``None``."""
    check_config_types(cfg)
    choices = group_choices()
    check_sweep_is_multirun(choices["experiment"])
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    loss = instantiate(cfg.loss)
    check_loss_fits_data(loss.task, cfg.data.num_classes, choices["loss"], choices["data"])
    if cfg.init_from and cfg.ckpt_path:
        raise ValueError("set init_from (a new run from weights) or ckpt_path (resume), not both")
    resume_from = resolve_resume(cfg.ckpt_path, cfg.auto_resume, output_dir)

    meta = {"task": loss.task, **choices, "seed": cfg.seed, "init_from": cfg.init_from}
    if cfg.init_from:
        meta["init_from_loss"] = loss_of_checkpoint(Path(cfg.init_from))
    loggers = build_loggers(cfg)
    trainer = build_trainer(cfg, loggers, ResultsWriter(output_dir / RESULTS_FILE, meta))
    world_size = trainer.num_devices * trainer.num_nodes
    per_process = per_rank_batch_size(cfg.data.batch_size, world_size)
    out_channels = output_channels(loss.task, cfg.data.num_classes)
    check_batchnorm_batch(per_process, world_size, has_batchnorm(cfg.model, out_channels))
    datamodule = instantiate(cfg.data, batch_size=per_process)
    module = build_module(cfg, loss, datamodule)

    if resume_from:
        log.info("resuming from %s", resume_from)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    except SIGTERMException as stop:
        # Lightning exits 0 after a SIGTERM; a job manager must see a run that did not finish
        raise SystemExit(128 + signal.SIGTERM) from stop
    finally:
        finish_wandb(loggers)
    if not trainer.is_global_zero:
        return None
    return summarize(output_dir / RESULTS_FILE)


def finish_wandb(loggers: list[Any]) -> None:
    """One W&B run per job: a multirun reuses the process, so close the run explicitly."""
    if any(isinstance(lg, WandbLogger) for lg in loggers):
        import wandb

        wandb.finish()


def summarize(results_path: Path) -> float | None:
    """Print the per-class IoU table (best and final epoch); return the best mIoU for sweepers."""
    results = read_results(results_path)
    columns = {label: results[label] for label in ("best", "final") if results.get(label)}
    if columns:
        title = f"{results['data']} / {results['loss']} / seed {results['seed']}"
        print_iou_table(title, columns)
    log.info("results: %s", results_path)
    return columns["best"]["val/mIoU"] if "best" in columns else None


@hydra.main(config_path="pkg://lovaszseg.conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    try:
        return train(cfg)
    except Exception:
        log.exception("training failed")  # the traceback in train.log, not only on stderr
        raise


if __name__ == "__main__":
    main()
