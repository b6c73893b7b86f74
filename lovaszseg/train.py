"""``python -m lovaszseg.train``: compose the config, instantiate data, module and trainer, fit.

Every building block comes from the config by ``_target_`` and checks itself: the data module its
files and the batch per process, the module the loss against the data and BatchNorm against the
batch, the trainer glue its strategy. The run's results are written by
:class:`lovaszseg.callbacks.results.ResultsWriter` inside the training process; the summary is
printed from what it wrote. Returns the best ``val/mIoU`` so Hydra sweepers can optimise it.

torch, Lightning and the network library are imported inside the functions that use them: at
the top they would make ``--help`` (and a refusal at the config check) wait seconds for them.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lovaszseg.config.console import RunEnded, quiet_lightning_console, run_for_people
from lovaszseg.config.job import group_choices, refuse_one_run_of_a_sweep, run_main_of
from lovaszseg.config.resolvers import register_resolvers
from lovaszseg.config.types import check_config_types
from lovaszseg.runs import contract
from lovaszseg.runs.iou_table import print_iou_table

if TYPE_CHECKING:
    from lovaszseg.module import SegmentationModule

log = logging.getLogger(__name__)
register_resolvers()


def build_module(cfg: DictConfig) -> SegmentationModule:
    """The configured module, its network compiled if asked, optionally from another run's weights."""
    from lovaszseg.module import load_checkpoint

    module = instantiate(cfg.module)
    if cfg.get("compile"):
        # in place: checkpoints keep the plain network's weight names
        module.net.compile(backend=cfg.get("compile_backend", "inductor"))
    if cfg.init_from:
        trusted = bool(cfg.get("trust_checkpoint"))
        checkpoint = load_checkpoint(cfg.init_from, trusted=trusted)
        module.load_net_weights(checkpoint["state_dict"], source=cfg.init_from)
        log.info("initialised the network from %s", cfg.init_from)
    return module


def run_facts(cfg: DictConfig, task: str) -> dict[str, Any]:
    """What results.json says about the run besides its scores."""
    facts = {"task": task, **group_choices(), "seed": cfg.seed, "init_from": cfg.init_from}
    if cfg.init_from:
        facts["init_from_loss"] = contract.loss_of_checkpoint(cfg.init_from)
    return facts


def train(cfg: DictConfig) -> float | None:
    """Fit one model as configured; returns the best ``val/mIoU`` (rank zero) or ``None``."""
    check_config_types(cfg)
    refuse_one_run_of_a_sweep(group_choices()["experiment"])
    if cfg.init_from and cfg.ckpt_path:
        raise ValueError("set init_from (a new run from weights) or ckpt_path (resume), not both")
    # only a config that passed the checks above waits for Lightning to load
    import pytorch_lightning as pl
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from lovaszseg.callbacks.results import ResultsWriter
    from lovaszseg.callbacks.sigterm_checkpoint import NotRequeued
    from lovaszseg.config.trainer import build_trainer, instantiate_all
    from lovaszseg.runs.resume import resolve_resume

    output_dir = Path(cfg.paths.output_dir)
    resume_from = resolve_resume(cfg.ckpt_path, cfg.auto_resume, output_dir)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    datamodule.check_files()
    module = build_module(cfg)
    results = ResultsWriter(contract.results_path(output_dir), run_facts(cfg, module.task))
    loggers = instantiate_all(cfg.get("logger"))
    trainer = build_trainer(cfg, loggers, extra=[results])
    # refused here, before Lightning starts the other processes
    module.check_batchnorm_batch(datamodule.batch_size, trainer.world_size)

    if resume_from:
        log.info("resuming from %s", resume_from)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    except NotRequeued as stop:
        # the job will not run again: submitit keeps this for the launcher (run_for_people)
        if trainer.is_global_zero:
            log.error("%s", stop)
        raise RunEnded(str(stop)) from None
    except SIGTERMException as stop:
        # Lightning exits 0 after a SIGTERM; a job manager must see a run that did not finish
        # (and submitit, after a requeue, nothing: the job runs again)
        raise SystemExit(128 + signal.SIGTERM) from stop
    finally:
        finish_wandb(loggers)
    if not trainer.is_global_zero:
        return None
    # under ddp_spawn the writer ran in the spawned process: only its file came back
    return summarize(results.results or contract.read_results(results.path), results.path)


def finish_wandb(loggers: list[Any]) -> None:
    """One W&B run per job: a multirun reuses the process, so close the run explicitly."""
    from pytorch_lightning.loggers import WandbLogger

    if any(isinstance(lg, WandbLogger) for lg in loggers):
        import wandb

        wandb.finish()


def summarize(results: dict[str, Any], path: Path) -> float | None:
    """Print the per-class IoU table (best and final epoch); return the best mIoU for sweepers."""
    columns = {k: results[k] for k in (contract.BEST, contract.FINAL) if results.get(k)}
    if columns:
        title = f"{results['data']} / {results['loss']} / seed {results['seed']}"
        print_iou_table(title, columns)
    log.info("results: %s", path)
    best = columns.get(contract.BEST)
    return best[contract.VAL_MIOU] if best else None


@hydra.main(config_path="pkg://lovaszseg.conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    quiet_lightning_console()
    return run_for_people(train, cfg, results_file=contract.results_path(cfg.paths.output_dir))


if __name__ == "__main__":
    run_main_of("lovaszseg.train")
