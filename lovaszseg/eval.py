"""``python -m lovaszseg.eval ckpt_path=... data=...``: score a training checkpoint on whole images.

The network, task and class names come from the checkpoint itself (stored by the training
module), so any run's ``best.ckpt`` can be evaluated on any data with the same classes. Images
are evaluated at full size, zero-padded to the network stride and cropped back.

torch and Lightning are imported inside ``evaluate``: ``--help`` must not wait seconds for them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from lovaszseg.config.console import quiet_lightning_console, run_for_people
from lovaszseg.config.job import group_choices, run_main_of
from lovaszseg.config.resolvers import register_resolvers
from lovaszseg.runs import contract
from lovaszseg.runs.iou_table import print_iou_table

if TYPE_CHECKING:
    from lovaszseg.module import SegmentationModule

log = logging.getLogger(__name__)
register_resolvers()


def check_classes_match(module: SegmentationModule, datamodule: Any, ckpt_path: str) -> None:
    if list(module.class_names) != list(datamodule.class_names):
        raise ValueError(
            f"{ckpt_path} was trained on classes {module.class_names} but the data has "
            f"{list(datamodule.class_names)}; evaluate it on data with the same classes"
        )


def evaluate(cfg: DictConfig) -> float | None:
    """Validate the checkpoint, print the IoU table, write results.json; returns the mIoU."""
    from lovaszseg.callbacks.predictions import PredictionWriter
    from lovaszseg.module import SegmentationModule

    started = time.monotonic()
    output_dir = Path(cfg.paths.output_dir)
    module = SegmentationModule.load_from_checkpoint(
        cfg.ckpt_path, weights_only=not cfg.trust_checkpoint
    ).eval()
    datamodule = instantiate(cfg.data)
    check_classes_match(module, datamodule, cfg.ckpt_path)
    datamodule.check_files()

    callbacks = []
    if cfg.save_predictions:
        normalisation = cfg.data.eval_transform
        callbacks.append(PredictionWriter(output_dir, normalisation.mean, normalisation.std))
    trainer = instantiate(
        cfg.trainer, logger=False, callbacks=callbacks, enable_checkpointing=False
    )
    trainer.validate(module, datamodule=datamodule, verbose=False)
    if not trainer.is_global_zero:
        return None

    scores = dict(module.last_val, epoch=module.checkpoint_epoch)
    data_name = group_choices()["data"]
    results = {
        "task": module.task,
        "data": data_name,
        "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
        contract.STATUS: contract.COMPLETED,
        contract.FINAL: scores,
        "wall_time_s": round(time.monotonic() - started, 2),
    }
    results_file = contract.results_path(output_dir)
    contract.write_results(results_file, results)
    ckpt = Path(cfg.ckpt_path)
    print_iou_table(f"{data_name} / {ckpt.parent.parent.name}/{ckpt.name}", {"eval": scores})
    print(f"results: {results_file}")
    if cfg.save_predictions:
        print(
            f"predictions: {output_dir / 'predictions'} (label PNGs), "
            f"overlays: {output_dir / 'overlays'} (image | truth | prediction)"
        )
    return scores[contract.VAL_MIOU]


@hydra.main(config_path="pkg://lovaszseg.conf", config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    quiet_lightning_console()
    return run_for_people(evaluate, cfg)


if __name__ == "__main__":
    run_main_of("lovaszseg.eval")
