"""``nn.Module`` forms of the Lovász losses, taking raw logits as segmentation models emit them.

Options are checked once, at construction; class ids and weights become buffers, so that
``.to(device)`` moves them with the module and no call copies them from a Python list.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from . import checks as checking
from .functional import lovasz_hinge, lovasz_multilabel, lovasz_softmax
from .lovasz import compute_dtype


class LovaszHingeLoss(nn.Module):
    """Binary Lovász hinge on logits [B, 1, *] or [B, *] against 0/1 labels [B, *].

    See ``lovasz_hinge`` for the options (activation, symmetric, empty, reduction, sync, checks).
    """

    def __init__(
        self,
        per_image: bool = True,
        ignore_index: int | None = None,
        *,
        activation: str = "relu",
        symmetric: bool = False,
        empty: str = "include",
        reduction: str = "mean",
        sync: str = "none",
        checks: str | None = None,
    ):
        super().__init__()
        self.per_image, self.ignore_index = per_image, ignore_index
        self.options = dict(
            activation=activation,
            symmetric=symmetric,
            empty=empty,
            reduction=reduction,
            sync=sync,
            checks=checks,
        )

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return lovasz_hinge(logits, labels, self.per_image, self.ignore_index, **self.options)

    def extra_repr(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"per_image={self.per_image}, ignore_index={self.ignore_index}, {options}"


def _checked_weights(name: str, class_weights) -> torch.Tensor | None:
    """``class_weights`` as a float64 tensor, checked (``ValueError``): finite and >= 0."""
    if class_weights is None:
        return None
    if not isinstance(class_weights, torch.Tensor):
        class_weights = list(class_weights)  # a Hydra ListConfig, a tuple, ...
    weights = torch.as_tensor(class_weights, dtype=torch.float64)
    if weights.dim() != 1:
        raise ValueError(f"{name}: class_weights of shape {tuple(weights.shape)}: expected [C]")
    checking.report(
        name, "sync", [checking.class_weights(weights, len(weights), weights.device, name)[1]]
    )
    return weights


def _checked_classes(name: str, classes):
    """``classes``: "present" / "all" as given, a list of ids as a sorted tensor of distinct ids."""
    if isinstance(classes, str):
        if classes not in ("present", "all"):
            raise ValueError(f"{name}: classes={classes!r} is not one of 'present', 'all'")
        return classes
    if isinstance(classes, torch.Tensor):
        classes = classes.tolist()
    if (
        not isinstance(classes, Sequence)
        or not classes
        or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in classes)
    ):
        raise ValueError(f"{name}: classes={classes!r} is not 'present', 'all' or a list of ids")
    return torch.tensor(sorted(set(classes)), dtype=torch.long)


class _ClassAveragedLoss(nn.Module):
    """Options shared by the losses that average one Lovász loss per class (or channel)."""

    def __init__(
        self, name, classes, per_image, ignore_index, class_weights, reduction, sync, checks
    ):
        super().__init__()
        checking.choose(name, checks, torch.device("cpu"))
        ids = _checked_classes(name, classes)
        self.classes = classes if isinstance(ids, str) else ids.tolist()
        self.per_image, self.ignore_index = per_image, ignore_index
        self.reduction, self.sync, self.checks = reduction, sync, checks
        self.register_buffer("class_ids", None if isinstance(ids, str) else ids, persistent=False)
        self.register_buffer(
            "class_weights", _checked_weights(name, class_weights), persistent=False
        )

    def _options(self) -> dict:
        return dict(
            classes=self.classes if self.class_ids is None else self.class_ids,
            per_image=self.per_image,
            ignore_index=self.ignore_index,
            class_weights=self.class_weights,
            reduction=self.reduction,
            sync=self.sync,
            checks=self.checks,
        )

    def extra_repr(self) -> str:
        return (
            f"classes={self.classes!r}, per_image={self.per_image}, "
            f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, sync={self.sync!r}, "
            f"checks={self.checks!r}"
        )


class LovaszSoftmaxLoss(_ClassAveragedLoss):
    """Lovász-softmax on logits [B, C, *] (softmax over C inside, float32 or float64).

    See ``lovasz_softmax`` for the options (classes, class_weights, reduction, sync, checks).
    """

    def __init__(
        self,
        classes: str | Sequence[int] = "present",
        per_image: bool = False,
        ignore_index: int | None = None,
        *,
        class_weights: Sequence[float] | None = None,
        reduction: str = "mean",
        sync: str = "none",
        checks: str | None = None,
    ):
        name = "LovaszSoftmaxLoss"
        super().__init__(
            name, classes, per_image, ignore_index, class_weights, reduction, sync, checks
        )

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # The softmax is taken inside: the C kernel then chains its backward through the rows'
        # sparse gradient (same values as lovasz_softmax(logits.softmax(1), ...)).
        return lovasz_softmax(logits, labels, **self._options(), from_logits=True)


class LovaszMultilabelLoss(_ClassAveragedLoss):
    """Multilabel Lovász loss on logits [B, C, *] against 0/1 targets [B, C, *].

    ``kind="sigmoid"`` applies a sigmoid inside (Lovász-sigmoid per channel); ``kind="hinge"``
    uses the Lovász hinge per channel on the logits. See ``lovasz_multilabel``.
    """

    def __init__(
        self,
        kind: str = "sigmoid",
        classes: str | Sequence[int] = "present",
        per_image: bool = False,
        ignore_index: int | None = None,
        *,
        class_weights: Sequence[float] | None = None,
        reduction: str = "mean",
        sync: str = "none",
        checks: str | None = None,
    ):
        name = "LovaszMultilabelLoss"
        super().__init__(
            name, classes, per_image, ignore_index, class_weights, reduction, sync, checks
        )
        self.kind = kind

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        scores = logits.to(compute_dtype(logits))
        if self.kind == "sigmoid":
            scores = scores.sigmoid()
        return lovasz_multilabel(scores, targets, self.kind, **self._options())

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, " + super().extra_repr()
