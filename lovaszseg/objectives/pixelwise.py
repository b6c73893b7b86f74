"""Per-pixel baselines (BCE, cross-entropy) that skip ignored pixels exactly like the Lovász terms.

PyTorch's BCE has no ``ignore_index`` and its cross-entropy returns NaN when every pixel of a
batch is ignored; both would make a loss comparison dishonest or crash a run, so these wrappers
average over the valid pixels only and return a graph-connected zero when there are none.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _zero_like_graph(logits: torch.Tensor) -> torch.Tensor:
    """A 0-d zero that still carries ``logits``' graph, so backward() works on all-ignored batches."""
    return logits.sum() * 0.0


class BinaryCrossEntropy(nn.Module):
    """BCE on ONE logit channel: ``logits`` [B,1,H,W] or [B,H,W], ``labels`` {0,1,ignore} [B,H,W]."""

    def __init__(self, ignore_index: int | None = 255, pos_weight: float | None = None) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.pos_weight = pos_weight

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.dim() == labels.dim() + 1:
            if logits.shape[1] != 1:
                raise ValueError(
                    f"BinaryCrossEntropy expects one logit channel, got logits of shape "
                    f"{tuple(logits.shape)}; use the cross-entropy loss for multi-class outputs"
                )
            logits = logits.squeeze(1)
        if logits.shape != labels.shape:
            raise ValueError(
                f"BinaryCrossEntropy: logits {tuple(logits.shape)} and labels "
                f"{tuple(labels.shape)} must have the same spatial shape"
            )
        valid = (
            labels != self.ignore_index
            if self.ignore_index is not None
            else torch.ones_like(labels, dtype=torch.bool)
        )
        if not valid.any():
            return _zero_like_graph(logits)
        pos_weight = (
            None
            if self.pos_weight is None
            else torch.tensor(self.pos_weight, dtype=logits.dtype, device=logits.device)
        )
        return F.binary_cross_entropy_with_logits(
            logits[valid], labels[valid].to(logits.dtype), pos_weight=pos_weight
        )


class CrossEntropy(nn.Module):
    """Softmax cross-entropy: ``logits`` [B,C,H,W], ``labels`` [B,H,W] in [0,C) or ignore."""

    def __init__(self, ignore_index: int | None = 255, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.dim() != labels.dim() + 1 or logits.shape[1] < 2:
            raise ValueError(
                f"CrossEntropy expects logits [B,C,...] with C >= 2 and labels [B,...], got "
                f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)}"
            )
        if self.ignore_index is not None and not (labels != self.ignore_index).any():
            return _zero_like_graph(logits)
        return F.cross_entropy(
            logits,
            labels,
            ignore_index=-100 if self.ignore_index is None else self.ignore_index,
            label_smoothing=self.label_smoothing,
        )
