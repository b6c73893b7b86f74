"""The rows of a call: which pixels make each row, and their errors (the paper's first step).

Berman, Rannen Triki & Blaschko, *The Lovász-Softmax loss*, CVPR 2018, average one Lovász
extension of the Jaccard loss per class (or per (image, class) pair): a *row* of pixels with
errors ``|y - p|`` on probabilities, or the hinge ``1 - s x`` on logits. The public losses
(``functional``) describe their rows either as ``Rows``, for the C kernel (``ops.py``), which
reads ``x`` and the labels itself, or as errors laid out as rows [R, L] and their foreground
(``*_errors`` below), for the fixed-shape engine (``engine.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Rows(NamedTuple):
    """Which pixels of ``x`` [B, C, S] make each row of a call, and how their errors are formed.

    Row ``r`` holds channel ``channel[r]`` of image ``image[r]`` (of every image when ``image`` is
    None: batch-level rows, of length B·S). Its foreground is the pixels labelled ``target[r]``
    (labels [B, 1, S]), or, when ``target`` is None, the pixels whose dense target [B, C, S] is 1
    in its channel.
    Errors are ``1 - s x`` on the foreground and ``offset + s x`` elsewhere, with ``s = sign[r]``
    (+1 when None): ``offset`` 0 gives ``|y - p|`` on probabilities, 1 the hinge on logits.
    ``void`` is the label of pixels that take no part, or None when there are none.
    ``num_labels`` bounds the label values (the C kernel's lookup table).
    """

    image: torch.Tensor | None
    channel: torch.Tensor
    target: torch.Tensor | None
    void: int | None
    num_labels: int = 0
    sign: torch.Tensor | None = None
    offset: float = 0.0
    activation: str = "relu"  # or "elu+1" (hinge only): errors pass through elu(e) + 1


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 stays float64; every other float dtype (fp16, bf16, fp32) is computed in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _planes(values: torch.Tensor, class_ids: torch.Tensor | None, per_image: bool):
    """The class planes of ``values`` [B, C, S] (all, or ``class_ids``) grouped as [G, K, L]:
    per image [B, K, S] (a view when every class is taken), or batch-level [1, K, B·S], where
    each class's planes of every image are brought together (one copy)."""
    batch, _, size = values.shape
    if per_image:
        return values if class_ids is None else values.index_select(1, class_ids)
    planes = values.transpose(0, 1)
    if class_ids is not None:
        planes = planes.index_select(0, class_ids)
    return planes.reshape(1, -1, batch * size)


def _void_zeroed(errors, foreground, labels, void):
    """Void pixels (``labels == void``) get error 0 and no foreground: they take no part."""
    if void is None:
        return errors, foreground
    valid = labels != void
    return torch.where(valid, errors, 0.0), foreground & valid


def _hinge(scores: torch.Tensor, foreground: torch.Tensor, activation: str) -> torch.Tensor:
    """``1 - s`` on the foreground, ``1 + s`` elsewhere, through the activation, rounded as the
    native kernel rounds them (``t = s + 1``, then ``2 - t`` on the foreground and ``t``
    elsewhere): one rounding step apart would reorder near-equal errors, and the two paths would
    give different gradients."""
    shifted = scores + 1.0
    # 2 + (-1)·t is 2 - t and 0 + 1·t is t, each rounded once: one op on t, whose backward is
    # one product, where torch.where's two branches each need a backward and a sum
    flags = foreground.to(shifted.dtype)
    margin = torch.addcmul(2.0 * flags, shifted, 1.0 - 2.0 * flags)
    if activation == "elu+1":
        return torch.nn.functional.elu(margin).add_(1.0)
    return margin.relu()


def _as_rows(errors, foreground):
    """[G, K, L] → rows [G·K, L], (group, class) in group-major order."""
    return errors.reshape(-1, errors.shape[-1]), foreground.reshape(-1, foreground.shape[-1])


def hinge_errors(
    logits: torch.Tensor,
    labels: torch.Tensor,
    per_image: bool,
    void: int | None,
    symmetric: bool = False,
    activation: str = "relu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows [R, L] of hinge errors (differentiable in ``logits``) and their foreground, for the
    engine: ``logits`` and ``labels`` [B, S]; one row per image (or one for the batch), and with
    ``symmetric`` a second one per image whose foreground is label 0, on the negated logits.
    The second row's margins equal the first's, but rounded as the kernel rounds them
    (``2 - (1 - s)`` is not always ``1 + s``), so it gets errors of its own."""
    groups = logits.shape[0] if per_image else 1
    scores, labels = logits.reshape(groups, 1, -1), labels.reshape(groups, 1, -1)
    foreground = labels == 1
    errors = _hinge(scores, foreground, activation)
    if symmetric:
        errors = torch.cat([errors, _hinge(-scores, labels == 0, activation)], dim=1)
        foreground = torch.cat([foreground, labels == 0], dim=1)
    return _as_rows(*_void_zeroed(errors, foreground, labels, void))


def softmax_errors(
    probas: torch.Tensor,
    labels: torch.Tensor,
    class_ids: torch.Tensor | None,
    per_image: bool,
    void: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows [R, L] of errors ``|y - p|`` (differentiable in ``probas`` [B, C, S]) and their
    foreground (``labels`` [B, S] equal to the row's class), for the engine: one row per
    (image, class) or per class, for every class or for ``class_ids``."""
    batch, channels = probas.shape[:2]
    groups = batch if per_image else 1
    scores = _planes(probas, class_ids, per_image)
    targets = torch.arange(channels, device=labels.device) if class_ids is None else class_ids
    labels = labels.reshape(groups, 1, -1)
    foreground = labels == targets.view(1, -1, 1)
    errors = (foreground.to(scores.dtype) - scores).abs()
    return _as_rows(*_void_zeroed(errors, foreground, labels, void))


def multilabel_errors(
    scores: torch.Tensor,
    targets: torch.Tensor,
    class_ids: torch.Tensor | None,
    per_image: bool,
    void: int | None,
    hinge: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows [R, L] of errors (differentiable in ``scores`` [B, C, S]) and their foreground
    (``targets`` [B, C, S] equal to 1), for the engine: ``|y - p|`` on probabilities, or with
    ``hinge`` the hinge on logits; one row per (image, channel) or per channel."""
    scores = _planes(scores, class_ids, per_image)
    targets = _planes(targets, class_ids, per_image)
    foreground = targets == 1
    if hinge:
        errors = _hinge(scores, foreground, "relu")
    else:
        errors = (foreground.to(scores.dtype) - scores).abs()
    return _as_rows(*_void_zeroed(errors, foreground, targets, void))
