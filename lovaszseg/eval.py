"""``python -m lovaszseg.eval ckpt_path=... data=...``: score a training checkpoint on whole images.

The network, task and class names come from the checkpoint itself (stored by the training
module), so any run's ``best.ckpt`` can be evaluated on any data with the same classes. Images
are evaluated at full size, zero-padded to the network stride and cropped back.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from lovaszseg.callbacks.predictions import PredictionWriter
from lovaszseg.config.job import group_choices
from lovaszseg.config.resolvers import register_resolvers
from lovaszseg.module import SegmentationModule, load_checkpoint
from lovaszseg.runs.atomic import write_json_atomic
from lovaszseg.runs.iou_table import print_iou_table

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
    started = time.monotonic()
    output_dir = Path(cfg.paths.output_dir)
    checkpoint = load_checkpoint(cfg.ckpt_path)
    module = SegmentationModule.from_checkpoint(checkpoint, source=cfg.ckpt_path)
    datamodule = instantiate(cfg.data)
    check_classes_match(module, datamodule, cfg.ckpt_path)

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

    scores = dict(module.last_val, epoch=checkpoint.get("epoch"))
    data_name = group_choices()["data"]
    results = {
        "task": module.task,
        "data": data_name,
        "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
        "status": "completed",
        "final": scores,
        "wall_time_s": round(time.monotonic() - started, 2),
    }
    write_json_atomic(output_dir / "results.json", results)
    ckpt = Path(cfg.ckpt_path)
    print_iou_table(f"{data_name} / {ckpt.parent.parent.name}/{ckpt.name}", {"eval": scores})
    log.info("results: %s", output_dir / "results.json")
    return scores["val/mIoU"]


@hydra.main(config_path="pkg://lovaszseg.conf", config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    return evaluate(cfg)


if __name__ == "__main__":
    main()
