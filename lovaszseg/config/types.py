"""Types of the project's own config keys, checked as soon as the config is composed.

The configs are plain YAML (no schema), so ``data.batch_size=abc`` would otherwise travel as a
string into the Trainer or the DataLoader and fail there with a ``TypeError`` naming neither the
key nor what it should be. Keys not in the composed config (another loss, another data module)
are skipped; ``*`` matches every child of a mapping (each loss term).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

INTEGER = "an integer"
NUMBER = "a number"
BOOLEAN = "true or false"
OPTIONAL_INTEGER = "an integer or null"

KEY_TYPES = {
    "seed": INTEGER,
    "auto_resume": BOOLEAN,
    "data.batch_size": INTEGER,
    "data.val_batch_size": OPTIONAL_INTEGER,
    "data.num_workers": INTEGER,
    "data.crop_size": INTEGER,
    "data.num_classes": INTEGER,
    "data.ignore_index": INTEGER,
    "trainer.max_epochs": INTEGER,
    "trainer.num_nodes": INTEGER,
    "trainer.log_every_n_steps": INTEGER,
    "trainer.check_val_every_n_epoch": INTEGER,
    "loss.switch_epoch": OPTIONAL_INTEGER,
    "loss.terms.*.weight": NUMBER,
    "optimizer.lr": NUMBER,
    "optimizer.weight_decay": NUMBER,
    "optimizer.momentum": NUMBER,
    "callbacks.precise_bn.num_batches": INTEGER,
}

_ABSENT = object()


def _fits(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return kind == BOOLEAN
    if kind == NUMBER:
        return isinstance(value, int | float)
    if kind == OPTIONAL_INTEGER and value is None:
        return True
    return kind in (INTEGER, OPTIONAL_INTEGER) and isinstance(value, int)


def _keys(cfg: DictConfig, pattern: str) -> list[str]:
    """The concrete keys a pattern names in ``cfg`` (``a.*.b`` -> ``a.x.b``, ``a.y.b``, ...)."""
    head, star, tail = pattern.partition(".*.")
    if not star:
        return [pattern]
    children = OmegaConf.select(cfg, head, default=None)
    if not isinstance(children, DictConfig):
        return []
    return [f"{head}.{child}.{tail}" for child in children]


def check_config_types(cfg: DictConfig) -> None:
    """Raise ValueError naming every key whose value has the wrong type, and the type wanted."""
    problems = []
    for pattern, kind in KEY_TYPES.items():
        for key in _keys(cfg, pattern):
            value = OmegaConf.select(cfg, key, default=_ABSENT)
            if value is not _ABSENT and not _fits(value, kind):
                problems.append(f"{key}={value!r}: expected {kind}")
    if problems:
        raise ValueError("wrong type in the config: " + "; ".join(problems))
