"""OmegaConf resolvers the configs use; registered by the entry points before composing.

``${floordiv:${trainer.max_epochs},2}`` lets a finetune loss switch halfway through whatever
epoch budget the run has (``debug=fast`` included), so every usage mode gets the same budget.
``${gpus_per_node:${trainer.accelerator},${trainer.devices}}`` asks SLURM for GPUs only when the
run trains on them: a CPU run that asked for them would be refused by ``sbatch`` (no such gres).
``${global_batch:2,${trainer.devices},${trainer.num_nodes}}`` is the global batch that gives
each process 2 samples (the least BatchNorm trains on), so ``debug=fast`` runs on any device count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import OmegaConf


def _floordiv(numerator: int, denominator: int) -> int:
    return int(numerator) // int(denominator)


def _gpus_per_node(accelerator: str, devices: int) -> int | None:
    """``trainer.devices`` GPUs for a GPU (or ``auto``) run, none for any other accelerator."""
    return int(devices) if str(accelerator) in ("gpu", "cuda", "auto") else None


def _global_batch(per_process: int, devices: Any, num_nodes: int) -> int:
    """``per_process`` times the process count; ``devices`` may be a count or a list of ids
    (``auto`` and -1, unknown before the Trainer looks, count as one device)."""
    if isinstance(devices, Sequence) and not isinstance(devices, str):
        count = len(devices)
    else:
        count = int(devices) if str(devices).lstrip("-").isdigit() and int(devices) > 0 else 1
    return int(per_process) * count * int(num_nodes)


RESOLVERS = {
    "floordiv": _floordiv,
    "gpus_per_node": _gpus_per_node,
    "global_batch": _global_batch,
}


def register_resolvers() -> None:
    for name, resolver in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
