"""The C kernel as PyTorch operators, and which calls it takes from the engine.

``uses_kernel`` chooses: the fused C kernel (``native``) where it covers a call — float32 on
CPU, the relu hinge or ``|y - p|`` errors, one process — and the fixed-shape PyTorch engine
(``engine``) everywhere else: CUDA and other devices, float64, the smooth hinge,
``sync="global"``, and CPU with ``LOVASZSEG_NATIVE=0`` or without a C compiler.

``torch.ops.lovaszseg.rows`` is one opaque call with a declared schema (no input is mutated),
a fake implementation for tracing (the number of kept pixels is data-dependent: an unbacked
size) and a registered gradient; its two backward operators have no gradient of their own, so
a double backward raises instead of returning a wrong value. ``torch.library.opcheck`` checks
all three (tests/losses/test_kernel_runtime.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from . import native
from .lovasz import Rows, compute_dtype


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
    probas_disposable: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Row losses of float32 ``x`` [B, C, S] (``lovasz.Rows`` says what a row is), with what
    backward needs: ``(losses [R] float64, position, grad, kept [R], probas, x_range [2])``.
    With ``softmax``, ``x`` are logits and ``probas`` their softmax over C (else an empty
    tensor). ``x_range``: with ``check_range``, the smallest and largest value the rows read
    (else the empty range [inf, -inf]: the reduction is skipped when nobody asks).
    ``probas_disposable``: the caller keeps no reference to the returned ``probas``, so an eager
    backward may write the logits' gradient over them (no second buffer of their size)."""
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
def _(x, labels, image, channel, target, sign, offset, void_label, softmax, check_range, _owned):
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


def _setup_context(ctx, inputs, output):
    x, _, image, channel, _, sign, _, _, softmax, _, probas_disposable = inputs
    _, position, grad, kept, probas, x_range = output
    logits = x if softmax else None  # to recompute the probabilities (see _backward)
    ctx.save_for_backward(position, grad, kept, probas, image, channel, sign, logits)
    ctx.softmax, ctx.shape = softmax, x.shape
    ctx.probas_disposable = probas_disposable
    ctx.mark_non_differentiable(position, grad, kept, probas, x_range)
    # Their gradients would otherwise arrive as zero tensors, the probabilities' as large as the
    # logits: a buffer to fill for nothing.
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_losses, *_):
    position, grad, kept, probas, image, channel, sign, logits = ctx.saved_tensors
    weights = grad_losses.to(torch.float32)
    if sign is not None:
        weights = weights * sign
    weights = weights.contiguous()
    if ctx.softmax and ctx.probas_disposable and type(probas) is torch.Tensor:
        # Eager, and the caller said nobody else holds the probabilities: the gradient is
        # written over them, which are then spent (a fresh buffer the size of the logits would
        # cost page faults and a second stream of memory traffic); a second backward
        # (retain_graph) recomputes them from the logits.
        if getattr(ctx, "probas_spent", False):
            probas = native.softmax(logits.contiguous())
        grad_x = native.softmax_backward(
            probas, image, channel, kept, position, grad, weights, out=probas
        )
        ctx.probas_spent = True
    elif ctx.softmax:  # traced (torch.compile), or the probabilities are not ours to overwrite
        grad_x = softmax_grad(probas, image, channel, kept, position, grad, weights)
    else:
        grad_x = scatter_grad(position, grad, kept, weights, list(ctx.shape))
    return grad_x, None, None, None, None, None, None, None, None, None, None


rows.register_autograd(_backward, setup_context=_setup_context)


def uses_kernel(
    x: Tensor, activation: str = "relu", sync: bool = False, fixed_shape: bool = False
) -> bool:
    """Whether a call on ``x`` runs the C kernel (``kernel_rows``) rather than the engine: the
    kernel covers float32 on CPU, the relu hinge and ``|y - p|`` errors, in one process. A call
    traced by ``torch.compile`` that asks for ``fixed_shape`` takes the engine: the kernel's
    output size depends on the data, and its row selection reads the host."""
    if fixed_shape and torch.compiler.is_compiling():
        return False
    return not sync and native.usable(x, compute_dtype(x), activation)


def kernel_rows(
    x: Tensor, y: Tensor, spec: Rows, softmax: bool = False, check_range: bool = False
) -> tuple[Tensor, Tensor]:
    """Row losses [R] float32 of ``x`` [B, C, S] by the C kernel, for the rows ``spec`` describes,
    against labels [B, 1, S] or dense targets [B, C, S], and (with ``check_range``) the smallest
    and largest value of ``x`` the rows read [2]. With ``softmax``, ``x`` are logits whose
    softmax over C the rows read."""
    batch, channels, size = x.shape
    labels = y.reshape(batch, channels if spec.target is None else 1, size)
    if labels.dtype not in (torch.uint8, torch.int32):
        labels = labels.to(torch.int32)
    losses, *_, x_range = rows(
        x.to(torch.float32).contiguous(),
        labels.contiguous(),
        *(None if t is None else t.to(torch.int64).contiguous() for t in spec[:3]),
        None if spec.sign is None else spec.sign.to(torch.float32).contiguous(),
        float(spec.offset),
        -1 if spec.void is None else int(spec.void),
        softmax,
        check_range,
        True,  # probas_disposable: the probabilities are dropped here, unseen by anyone else
    )
    return losses.to(torch.float32), x_range
