"""The C kernel as PyTorch operators: what ``torch.compile`` and autograd see of it.

``torch.ops.lovaszseg.rows`` is one opaque call with a declared schema (no input is mutated),
a fake implementation for tracing (the number of kept pixels is data-dependent: an unbacked
size) and a registered gradient; its two backward operators have no gradient of their own, so
a double backward raises instead of returning a wrong value. ``torch.library.opcheck`` checks
all three (tests/losses/test_ops.py).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import torch
from torch import Tensor

from . import native


@torch.library.custom_op("lovaszseg::rows", mutates_args=())
def rows(
    x: Tensor,
    labels: Tensor,
    image: Tensor | None,
    channel: Tensor,
    target: Tensor | None,
    sign: Tensor | None,
    offset: float,
    void_label: int,
    softmax: bool,
    check_range: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Row losses of float32 ``x`` [B, C, S] (``lovasz.Rows`` says what a row is), with what
    backward needs: ``(losses [R] float64, position, grad, kept [R], probas, x_range [2])``.
    With ``softmax``, ``x`` are logits and ``probas`` their softmax over C (else an empty
    tensor). ``x_range``: with ``check_range``, the smallest and largest value the rows read
    (else the empty range [inf, -inf]: the reduction costs a sixth of the kernel's first pass)."""
    probas = native.softmax(x) if softmax else x.new_empty(0)
    losses, position, grad, kept, x_range = native.rows(
        probas if softmax else x,
        labels,
        image,
        channel,
        target,
        sign,
        offset,
        void_label,
        check_range=check_range,
    )
    return losses, position, grad, kept, probas, x_range


@rows.register_fake
def _(x, labels, image, channel, target, sign, offset, void_label, softmax, check_range):
    n_rows = channel.shape[0]
    kept_pixels = torch.library.get_ctx().new_dynamic_size()
    return (
        x.new_empty(n_rows, dtype=torch.float64),
        x.new_empty(kept_pixels, dtype=torch.int32),
        x.new_empty(kept_pixels),
        x.new_empty(n_rows, dtype=torch.int64),
        torch.empty_like(x) if softmax else x.new_empty(0),
        x.new_empty(2),
    )


@torch.library.custom_op("lovaszseg::scatter_grad", mutates_args=())
def scatter_grad(
    position: Tensor, grad: Tensor, kept: Tensor, weights: Tensor, shape: Sequence[int]
) -> Tensor:
    """The gradient [shape] of the rows' losses weighted by ``weights`` [R]: each kept pixel's
    gradient times its row's weight, at its position; zero elsewhere."""
    return native.scatter(shape, kept, position, grad, weights.contiguous())


@scatter_grad.register_fake
def _(position, grad, kept, weights, shape):
    return grad.new_empty(shape)


@torch.library.custom_op("lovaszseg::softmax_grad", mutates_args=())
def softmax_grad(
    probas: Tensor,
    image: Tensor | None,
    channel: Tensor,
    kept: Tensor,
    position: Tensor,
    grad: Tensor,
    weights: Tensor,
) -> Tensor:
    """The logits' gradient [B, C, S] through the softmax whose output is ``probas``, of the rows'
    losses weighted by ``weights`` [R]."""
    return native.softmax_backward(probas, image, channel, kept, position, grad, weights)


@softmax_grad.register_fake
def _(probas, image, channel, kept, position, grad, weights):
    return torch.empty_like(probas)


def _unobserved(probas: Tensor) -> bool:
    """Whether only the saved-tensor slot and the caller's local name refer to ``probas``."""
    # The slot, the caller's name, this parameter and getrefcount's own argument.
    return sys.getrefcount(probas) <= 4


def _setup_context(ctx, inputs, output):
    x, _, image, channel, _, sign, _, _, softmax, _ = inputs
    _, position, grad, kept, probas, x_range = output
    logits = x if softmax else None  # to recompute the probabilities (see _backward)
    ctx.save_for_backward(position, grad, kept, probas, image, channel, sign, logits)
    ctx.softmax, ctx.shape = softmax, x.shape
    ctx.mark_non_differentiable(position, grad, kept, probas, x_range)
    # Their gradients would otherwise arrive as zero tensors, the probabilities' the size of
    # the logits: filling it cost a third of the softmax loss's time.
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_losses, *_):
    position, grad, kept, probas, image, channel, sign, logits = ctx.saved_tensors
    weights = grad_losses.to(torch.float32)
    if sign is not None:
        weights = weights * sign
    weights = weights.contiguous()
    if ctx.softmax and type(probas) is torch.Tensor and _unobserved(probas):
        # Eager, and nobody holds the probabilities but this backward (the losses drop them):
        # the gradient is written over them, which are then spent (a fresh buffer the size of
        # the logits would cost page faults and a second stream of memory traffic); a second
        # backward (retain_graph) recomputes them from the logits.
        if getattr(ctx, "probas_spent", False):
            probas = native.softmax(logits.contiguous())
        grad_x = native.softmax_backward(
            probas, image, channel, kept, position, grad, weights, out=probas
        )
        ctx.probas_spent = True
    elif ctx.softmax:  # traced (torch.compile), or the output is held: the functional operator
        grad_x = softmax_grad(probas, image, channel, kept, position, grad, weights)
    else:
        grad_x = scatter_grad(position, grad, kept, weights, list(ctx.shape))
    return grad_x, None, None, None, None, None, None, None, None, None


rows.register_autograd(_backward, setup_context=_setup_context)
