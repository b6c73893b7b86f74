"""OmegaConf resolvers the configs use; registered by the entry points before composing.

``${floordiv:${trainer.max_epochs},2}`` lets a finetune loss switch halfway through whatever
epoch budget the run has (``debug=fast`` included), so every usage mode gets the same budget.
``${gpus_per_node:${trainer.accelerator},${trainer.devices}}`` asks SLURM for GPUs only when the
run trains on them: a CPU run that asked for them would be refused by ``sbatch`` (no such gres).
``${global_batch:2,${trainer.devices},${trainer.num_nodes}}`` is the global batch that gives
each process 2 samples (the least BatchNorm trains on), so ``debug=fast`` runs on any device count.
``${output_channels:${loss.task},${data.num_classes}}`` is the network's ``classes``: one logit
for a binary loss, one per class otherwise.
``${job_dirname:...}`` names sweep job folders by their overrides, and ``${group_options:loss}``
lists a config group's options for ``--help``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

from omegaconf import OmegaConf

MAX_DIRNAME = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+@-]+")
_LONG_FLOAT = re.compile(r"\d+\.\d{5,}(?:e-?\d+)?")


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


def _output_channels(task: str, num_classes: int) -> int:
    from lovaszseg.objectives.compose import output_channels  # lazily: it imports torch

    return output_channels(str(task), int(num_classes))


def job_dirname(number: int, overrides: str) -> str:
    """``3_loss=bce,seed=2``: the job number (unique, sorts) and its overrides, filesystem-safe.

    Floats are shown to 4 significant digits (a searcher's 0.47531980423231657 -> 0.4753),
    anything but letters, digits and ``._=,+@-`` becomes ``_`` (a value's ``/`` would nest
    folders); long names are cut to ``MAX_DIRNAME`` characters, the number keeps them unique.
    """
    short = _LONG_FLOAT.sub(lambda m: f"{float(m.group()):.4g}", str(overrides))
    safe = _UNSAFE.sub("_", short).strip("._")
    name = f"{number}_{safe}" if safe else str(number)
    return name[:MAX_DIRNAME]


def group_options(group: str, chosen: str | None = None) -> str:
    """The options of config group ``group`` (``conf/<group>/*.yaml``), comma-separated, the
    ``chosen`` one marked ``(default)``.

    ``--help`` passes the composed choice (``${hydra:runtime.choices.loss}``): the primary
    config's default, or what overrides given with ``--help`` pick instead. A group whose
    default is none (``experiment``) has no mark.
    """
    folder = resources.files("lovaszseg.conf").joinpath(group)
    names = sorted(
        entry.name.removesuffix(".yaml")
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    )
    return ", ".join(f"{name} (default)" if name == chosen else name for name in names)


RESOLVERS = {
    "floordiv": _floordiv,
    "gpus_per_node": _gpus_per_node,
    "global_batch": _global_batch,
    "output_channels": _output_channels,
    "job_dirname": job_dirname,
    "group_options": group_options,
}


def register_resolvers() -> None:
    for name, resolver in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
