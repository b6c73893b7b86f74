"""The Lovász extension of the Jaccard loss on rows of pixel errors: fixed shapes, any device.

Berman, Rannen Triki & Blaschko, *The Lovász-Softmax loss*, CVPR 2018. Given the errors of a row
(a class, or an (image, class) pair), the paper sorts them in decreasing order, takes the
differences of the Jaccard losses of the sorted prefixes (``lovasz_grad``) and dots them with
the sorted errors. Here every row of a call, laid out ``[R, L]``, goes through those steps at
once, in four functions with the paper's names:

1. ``sort_keys`` (the prologue): one integer key per pixel, packing the error's bits and the
   foreground flag, so that one sort orders errors and carries the flags;
2. ``sort_errors``: one ``torch.sort`` of the keys along the rows;
3. ``lovasz_grad`` (the epilogue): the Jaccard increments in closed form from exact integer
   counts (a float32 running Jaccard would lose pixels past 2^24);
4. ``lovasz_dot``: the rows' losses, summed in float64; the increments are the gradient of a
   row's loss with respect to its sorted errors, scattered back through the sort's permutation.

Every tensor has a shape known from the input's shape, and nothing is read back to the host, so
a call is a fixed sequence of kernels on a GPU and one graph for ``torch.compile``. On CUDA, in
eager mode and with ``LOVASZSEG_TRITON=1``, Triton kernels (``engine_triton``) replace the
prologue and the epilogue, each one pass where PyTorch chains several elementwise kernels; they
follow these PyTorch versions' tensor contracts (in their docstrings).

The tie rule, shared with the C kernel (``_native.c``): at equal errors foreground pixels come
first, then pixels in their order along the row. The order of tied pixels does not change the
loss, but it chooses the subgradient: foreground first gives the tied background pixels the
increments of the smaller unions after the whole foreground tie; the authors' code (an unstable
sort) spreads them arbitrarily.
"""

from __future__ import annotations

import torch

from . import distributed, engine_triton

_KEY_DTYPE = {torch.float32: torch.int32, torch.float64: torch.int64}


def _sign_bit(dtype: torch.dtype) -> int:
    return -(2 ** (torch.iinfo(dtype).bits - 1))


def sort_keys(errors: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
    """The prologue: keys [R, L] whose decreasing order is the rows' sort order.

    Contract: ``errors`` [R, L] float32 or float64, contiguous; ``foreground`` [R, L] bool. Returns
    int32 keys (int64 for float64 errors): ``((bits << 1) | foreground) ^ sign bit`` for errors of
    at least the smallest normal float, the smallest key otherwise. A non-negative float's bits
    keep its order when read as an integer, the shift leaves the low bit for the flag (foreground
    first at equal errors), and flipping the sign bit turns that unsigned order into the signed
    one ``torch.sort`` uses. Errors below the smallest normal (zero, negative, NaN, and void pixels
    whose caller set them to zero) contribute nothing: their key, the smallest, sorts them last.
    """
    key_dtype = _KEY_DTYPE[errors.dtype]
    key = torch.bitwise_left_shift(errors.view(key_dtype), 1).bitwise_or_(foreground)
    key.mul_(errors >= torch.finfo(errors.dtype).tiny)  # 0 for the pixels taking no part
    return key.bitwise_xor_(_sign_bit(key_dtype))


def sort_errors(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted keys [R, L] and the permutation [R, L] that sorted each row: decreasing error,
    foreground first, and (stable) the row's order at equal keys, as the C kernel sorts."""
    return torch.sort(keys, dim=1, descending=True, stable=True)


def lovasz_grad(sorted_keys: torch.Tensor, gts: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The epilogue: the Jaccard increments [R, L] of the sorted pixels, in ``dtype``.

    Contract: ``sorted_keys`` [R, L] from ``sort_errors``; ``gts`` [R, 1] int32, the foreground
    count of every row (void pixels excluded).

    At the i-th pixel (0-based) of a row with ``|F|`` foreground pixels, ``fg_seen`` of which at or
    before it, ``inter = |F| - fg_seen`` and ``union = inter + i + 1``: the prefix's Jaccard loss is
    ``1 - inter / union``. A foreground pixel lowers ``inter`` by one: increment ``1 / union``; a
    background pixel raises ``union`` by one: ``inter / (union (union - 1))``. Both are
    ``numerator / (union (union - 1))`` with the integer numerator ``inter + i`` (foreground) or
    ``inter``, except at ``union`` 1 (a row's first pixel, which is its only foreground pixel or
    comes before any), where the increment is 1. The pixels sorted last for taking no part have
    error 0: whatever their increments, they add nothing to the loss.
    """
    length = sorted_keys.shape[1]
    count_dtype = torch.int32 if length < 2**30 else torch.int64  # union <= |F| + L <= 2L
    foreground = sorted_keys.bitwise_and(1)
    inter = gts - torch.cumsum(foreground, 1, dtype=count_dtype)
    index = torch.arange(length, dtype=count_dtype, device=sorted_keys.device)
    return _increments(inter, foreground, index, dtype)


def _increments(inter, foreground, index, dtype):
    """``lovasz_grad``'s closed form from ``inter``, the foreground flags (0/1) and each pixel's
    index in its row (``union - 1 = inter + index``)."""
    before = (inter + index).to(dtype)  # union - 1
    numerator = torch.addcmul(inter, foreground, index).to(dtype)
    increments = numerator.div_(before * (before + 1))
    return torch.where(before > 0, increments, 1.0)


def lovasz_dot(errors: torch.Tensor, increments: torch.Tensor) -> torch.Tensor:
    """The rows' losses [R], float64: the sorted errors dotted with the increments."""
    return torch.sum(errors * increments, dim=1, dtype=torch.float64)


def _compacted_rows(errors, foreground, keys, gts):
    """The losses [R] float64 and increments [R, L] of ``lovasz_grad`` and ``lovasz_dot``, from a
    sort of only the pixels whose increment can be nonzero: a CPU's sort costs in proportion to
    what it sorts, and a host read costs nothing there. Data-dependent shapes: eager CPU only.

    Below a row's smallest foreground error, every foreground pixel is already ranked, so every
    background pixel's increment is 0; a row without foreground needs only its largest errors.
    The kept pixels, gathered in row-major order, are sorted once by (row, key) as int64
    composites (a stable radix sort: ties keep their order along the row).
    """
    rows, length = errors.shape
    lowest = torch.where(foreground, errors, torch.inf).amin(1, keepdim=True)
    threshold = torch.where(gts > 0, lowest, errors.amax(1, keepdim=True))
    keep = (errors >= threshold) & (keys != _sign_bit(keys.dtype))
    flat = keep.view(-1).nonzero().squeeze(1)
    key = keys.view(-1).index_select(0, flat)
    row = flat // length
    if rows == 1:  # the key alone, complemented: ascending is decreasing error
        composite = key.bitwise_not()
    else:
        composite = (row << 32) + (key.bitwise_not().to(torch.int64) - _sign_bit(keys.dtype))
    order = torch.sort(composite, stable=True).indices
    flat, row, key = flat[order], row[order], key[order]
    counts = keep.sum(1)
    starts = counts.cumsum(0) - counts
    fg = key.bitwise_and(1).long()
    seen = torch.cumsum(fg, 0)
    seen_before = torch.cat([seen.new_zeros(1), seen]).index_select(0, starts)
    inter = gts.view(-1).long().index_select(0, row) - (seen - seen_before.index_select(0, row))
    index = torch.arange(row.numel()) - starts.index_select(0, row)
    increments = _increments(inter, fg, index, errors.dtype)
    products = (errors.view(-1).index_select(0, flat) * increments).double()
    losses = torch.zeros(rows, dtype=torch.float64).index_add_(0, row, products)
    grad = errors.new_zeros(rows * length).index_copy_(0, flat, increments)
    return losses, grad.view(rows, length)


class _RowLosses(torch.autograd.Function):
    """Row losses and foreground counts of ``errors`` [R, L]. The increments, scattered back
    through the sort's permutation (no two pixels collide), are saved for backward."""

    @staticmethod
    def forward(ctx, errors, foreground, gather, compact):
        gts = foreground.sum(1, keepdim=True, dtype=torch.int32)
        triton = not torch.compiler.is_compiling() and engine_triton.usable(errors)
        keys = (engine_triton.sort_keys if triton else sort_keys)(errors, foreground)
        if compact:
            losses, grad = _compacted_rows(errors, foreground, keys, gts)
            ctx.save_for_backward(grad)
            ctx.mark_non_differentiable(gts)
            ctx.set_materialize_grads(False)
            return losses, gts
        if gather:  # the rows span every process: their counts and pixels, gathered
            gts = distributed.all_reduce_sum(gts)
            keys, mine = distributed.gather_rows(keys, torch.iinfo(keys.dtype).min)
            errors, _ = distributed.gather_rows(errors, 0.0)
        sorted_keys, order = sort_errors(keys)
        del keys
        increments = (engine_triton.lovasz_grad if triton else lovasz_grad)(
            sorted_keys, gts, errors.dtype
        )
        del sorted_keys
        losses = lovasz_dot(errors.gather(1, order), increments)
        if ctx.needs_input_grad[0]:  # d loss_r / d error = the error's increment
            grad = torch.empty_like(increments).scatter_(1, order, increments)
            if gather:  # this process's pixels, scaled for DDP's averaging of gradients
                grad = grad[:, mine[0] : mine[1]] * distributed.world_size()
            ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(gts)
        ctx.set_materialize_grads(False)  # no zero gradient of the counts to build
        return losses, gts

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_losses, _):
        (grad,) = ctx.saved_tensors
        if grad_losses is None:  # only the counts were used
            return None, None, None, None
        return grad * grad_losses.to(grad.dtype).unsqueeze(1), None, None, None


def row_losses(
    errors: torch.Tensor, foreground: torch.Tensor, gather: bool = False, fixed_shape: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Lovász extension of the Jaccard loss of each row of ``errors`` [R, L] (float32 or
    float64, differentiable), whose foreground is ``foreground`` [R, L] (bool, False at void
    pixels, whose errors must be 0). Returns the losses [R] float64 and the foreground counts
    [R, 1] int32.

    With ``gather``, the rows continue on every process of the default ``torch.distributed``
    group (a batch-level loss under DDP), and the losses are those of the whole rows. Without
    ``fixed_shape``, an eager float32 call on CPU sorts only the pixels that can contribute
    (same values; a host read and data-dependent shapes, which cost nothing there).
    """
    compact = (
        not fixed_shape
        and not gather
        and errors.device.type == "cpu"
        and errors.dtype == torch.float32
        and not torch.compiler.is_compiling()
    )
    return _RowLosses.apply(errors.contiguous(), foreground, gather, compact)
