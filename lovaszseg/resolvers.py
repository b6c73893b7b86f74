"""OmegaConf resolvers the configs use; registered by the entry points before composing.

``${floordiv:${trainer.max_epochs},2}`` lets a finetune loss switch halfway through whatever
epoch budget the run has (``debug=fast`` included), so every usage mode gets the same budget.
"""

from __future__ import annotations

from omegaconf import OmegaConf


def _floordiv(numerator: int, denominator: int) -> int:
    return int(numerator) // int(denominator)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("floordiv"):
        OmegaConf.register_new_resolver("floordiv", _floordiv)
