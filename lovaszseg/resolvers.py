"""OmegaConf resolvers the configs use; registered by the entry points before composing.

``${floordiv:${trainer.max_epochs},2}`` lets a finetune loss switch halfway through whatever
epoch budget the run has (``debug=fast`` included), so every usage mode gets the same budget.
``${gpus_per_node:${trainer.accelerator},${trainer.devices}}`` asks SLURM for GPUs only when the
run trains on them: a CPU run that asked for them would be refused by ``sbatch`` (no such gres).
"""

from __future__ import annotations

from omegaconf import OmegaConf


def _floordiv(numerator: int, denominator: int) -> int:
    return int(numerator) // int(denominator)


def _gpus_per_node(accelerator: str, devices: int) -> int | None:
    """``trainer.devices`` GPUs for a GPU (or ``auto``) run, none for any other accelerator."""
    return int(devices) if str(accelerator) in ("gpu", "cuda", "auto") else None


RESOLVERS = {"floordiv": _floordiv, "gpus_per_node": _gpus_per_node}


def register_resolvers() -> None:
    for name, resolver in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
