"""``nn.Module`` forms of the Lovász losses, taking raw logits as segmentation models emit them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .functional import _softmax_loss, lovasz_hinge, lovasz_multilabel
from .lovasz import compute_dtype


def _weights_buffer(module: nn.Module, class_weights) -> None:
    """Class weights as a buffer, so that ``.to(device)`` moves them with the module."""
    weights = (
        None if class_weights is None else torch.as_tensor(list(class_weights), dtype=torch.float32)
    )
    module.register_buffer("class_weights", weights, persistent=False)


class LovaszHingeLoss(nn.Module):
    """Binary Lovász hinge on logits [B, 1, *] or [B, *] against 0/1 labels [B, *].

    See ``lovasz_hinge`` for the options (activation, symmetric, empty, reduction, sync).
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
    ):
        super().__init__()
        self.per_image, self.ignore_index = per_image, ignore_index
        self.options = dict(
            activation=activation, symmetric=symmetric, empty=empty, reduction=reduction, sync=sync
        )

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return lovasz_hinge(logits, labels, self.per_image, self.ignore_index, **self.options)

    def extra_repr(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"per_image={self.per_image}, ignore_index={self.ignore_index}, {options}"


class _ClassAveragedLoss(nn.Module):
    """Options shared by the losses that average one Lovász loss per class (or channel)."""

    def __init__(self, classes, per_image, ignore_index, class_weights, reduction, sync):
        super().__init__()
        self.classes, self.per_image, self.ignore_index = classes, per_image, ignore_index
        self.reduction, self.sync = reduction, sync
        _weights_buffer(self, class_weights)

    def _options(self) -> dict:
        return dict(class_weights=self.class_weights, reduction=self.reduction, sync=self.sync)

    def extra_repr(self) -> str:
        return (
            f"classes={self.classes!r}, per_image={self.per_image}, "
            f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, sync={self.sync!r}"
        )


class LovaszSoftmaxLoss(_ClassAveragedLoss):
    """Lovász-softmax on logits [B, C, *] (softmax over C inside, float32 or float64).

    See ``lovasz_softmax`` for the options (classes, class_weights, reduction, sync).
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
    ):
        super().__init__(classes, per_image, ignore_index, class_weights, reduction, sync)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # The softmax runs inside the kernel, which chains its backward through the rows' sparse
        # gradient instead of a dense one (same values as lovasz_softmax(logits.softmax(1), ...)).
        return _softmax_loss(
            logits,
            labels,
            self.classes,
            self.per_image,
            self.ignore_index,
            self.class_weights,
            self.reduction,
            self.sync,
            from_logits=True,
        )


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
    ):
        super().__init__(classes, per_image, ignore_index, class_weights, reduction, sync)
        self.kind = kind

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        scores = logits.to(compute_dtype(logits))
        if self.kind == "sigmoid":
            scores = scores.sigmoid()
        return lovasz_multilabel(
            scores,
            targets,
            self.kind,
            self.classes,
            self.per_image,
            self.ignore_index,
            **self._options(),
        )

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, " + super().extra_repr()
