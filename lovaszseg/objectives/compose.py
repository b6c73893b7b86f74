"""A loss as a set of named, weighted terms, optionally switching terms at an epoch.

This is how PaddleSeg (``SOLVER.LOSS`` + ``LOSS_WEIGHT``) and mmseg (``loss_name`` /
``loss_weight``) express loss configurations, and it covers the three Lovász usage modes: one
term (direct), several terms (combined), or terms that run before / after ``switch_epoch``
(finetune). The epoch is passed in by the caller from the trainer's own counter, so the schedule
stays correct when a run resumes from a checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

Phase = Literal["always", "before_switch", "after_switch"]
Task = Literal["binary", "multiclass"]
PHASES: tuple[str, ...] = ("always", "before_switch", "after_switch")
TASKS: tuple[str, ...] = ("binary", "multiclass")


def output_channels(task: str, num_classes: int) -> int:
    """One logit for binary tasks, one per class otherwise."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return 1 if task == "binary" else num_classes


class LossTerm(nn.Module):
    """One named ingredient of a loss: a criterion, its weight and when it is active."""

    def __init__(self, fn: nn.Module, weight: float = 1.0, phase: Phase = "always") -> None:
        super().__init__()
        if phase not in PHASES:
            raise ValueError(f"loss term phase must be one of {PHASES}, got {phase!r}")
        if weight < 0:
            raise ValueError(f"loss term weight must be >= 0, got {weight}")
        self.fn = fn
        self.weight = float(weight)
        self.phase = phase

    def is_active(self, epoch: int, switch_epoch: int | None) -> bool:
        if self.phase == "always" or switch_epoch is None:
            return True
        return (epoch < switch_epoch) == (self.phase == "before_switch")


@dataclass(frozen=True)
class LossOutput:
    """The weighted total that is optimised, and each active term's unweighted value for logging."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]


class CompositeLoss(nn.Module):
    """Weighted sum of named terms; ``task`` says whether the model has one logit or C logits."""

    def __init__(
        self,
        terms: Mapping[str, LossTerm],
        task: Task,
        switch_epoch: int | None = None,
    ) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"loss task must be one of {TASKS}, got {task!r}")
        if not terms:
            raise ValueError("a loss needs at least one term under `terms`")
        phases = {term.phase for term in terms.values()}
        scheduled = phases - {"always"}
        if scheduled and switch_epoch is None:
            raise ValueError(
                f"loss terms use phases {sorted(scheduled)} but `switch_epoch` is not set"
            )
        if switch_epoch is not None:
            if not scheduled:
                raise ValueError(
                    f"switch_epoch={switch_epoch} is set but no term has phase "
                    "'before_switch' or 'after_switch', so nothing would switch"
                )
            if switch_epoch < 1:
                raise ValueError(f"switch_epoch must be >= 1, got {switch_epoch}")
        self.terms = nn.ModuleDict(dict(terms))
        self.task = task
        self.switch_epoch = switch_epoch

    def active_terms(self, epoch: int) -> list[str]:
        return [
            name for name, term in self.terms.items() if term.is_active(epoch, self.switch_epoch)
        ]

    def check_schedule(self, max_epochs: int) -> None:
        """Fail before training when some term would never run, or some epoch would have none."""
        if self.switch_epoch is not None and self.switch_epoch >= max_epochs:
            after = [n for n, t in self.terms.items() if t.phase == "after_switch"]
            raise ValueError(
                f"loss.switch_epoch={self.switch_epoch} but the run has only {max_epochs} epochs: "
                f"terms {after} would never train; lower loss.switch_epoch"
            )
        for epoch in {0, self.switch_epoch or 0}:
            if not self.active_terms(epoch):
                raise ValueError(f"no loss term is active at epoch {epoch}")

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, epoch: int = 0) -> LossOutput:
        values = {name: self.terms[name].fn(logits, labels) for name in self.active_terms(epoch)}
        total = sum(self.terms[name].weight * value for name, value in values.items())
        return LossOutput(total=total, terms=values)
