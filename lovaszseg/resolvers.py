"""OmegaConf resolvers the configs use; registered by the entry points before composing.

``${floordiv:${trainer.max_epochs},2}`` lets a finetune loss switch halfway through whatever
epoch budget the run has (``debug=fast`` included), so every usage mode gets the same budget.
``${job_dirname:...}`` names sweep job folders by their overrides, and ``${group_options:loss}``
lists a config group's options for ``--help``.
"""

from __future__ import annotations

import re
from importlib import resources

from omegaconf import OmegaConf

MAX_DIRNAME = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+@-]+")
_LONG_FLOAT = re.compile(r"\d+\.\d{5,}(?:e-?\d+)?")


def _floordiv(numerator: int, denominator: int) -> int:
    return int(numerator) // int(denominator)


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


def group_options(group: str) -> str:
    """The options of config group ``group`` (``conf/<group>/*.yaml``), comma-separated."""
    folder = resources.files("lovaszseg.conf").joinpath(group)
    names = sorted(
        entry.name.removesuffix(".yaml")
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    )
    return ", ".join(names)


def register_resolvers() -> None:
    for name, function in (
        ("floordiv", _floordiv),
        ("job_dirname", job_dirname),
        ("group_options", group_options),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)
