"""``nn.Module`` forms of the Lovász losses, taking raw logits as segmentation models emit them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .lovasz import compute_dtype, lovasz_hinge, lovasz_softmax


class LovaszHingeLoss(nn.Module):
    """Binary Lovász hinge on logits [B, 1, *] or [B, *] against 0/1 labels [B, *]."""

    def __init__(self, per_image: bool = True, ignore_index: int | None = None):
        super().__init__()
        self.per_image = per_image
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return lovasz_hinge(logits, labels, self.per_image, self.ignore_index)

    def extra_repr(self) -> str:
        return f"per_image={self.per_image}, ignore_index={self.ignore_index}"


class LovaszSoftmaxLoss(nn.Module):
    """Lovász-softmax on logits [B, C, *] (softmax over C inside, float32 or float64)."""

    def __init__(
        self,
        classes: str | Sequence[int] = "present",
        per_image: bool = False,
        ignore_index: int | None = None,
    ):
        super().__init__()
        self.classes = classes
        self.per_image = per_image
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.dim() < 2:
            raise ValueError(
                f"LovaszSoftmaxLoss: expected logits [B, C, *], got shape {tuple(logits.shape)}"
            )
        probas = logits.to(compute_dtype(logits)).softmax(dim=1)
        return lovasz_softmax(probas, labels, self.classes, self.per_image, self.ignore_index)

    def extra_repr(self) -> str:
        return (
            f"classes={self.classes!r}, per_image={self.per_image}, "
            f"ignore_index={self.ignore_index}"
        )
