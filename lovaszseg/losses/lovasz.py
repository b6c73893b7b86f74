"""The Lovász extension of the Jaccard loss, batched over every row of a call.

Berman, Rannen Triki & Blaschko, *The Lovász-Softmax loss*, CVPR 2018. For each row (a class, or an
(image, class) pair) the paper's recipe is: compute the pixel errors, sort them in decreasing
order, take the Jaccard loss of each prefix of that order, and dot the sorted errors with the
prefix losses' differences (the Lovász extension's gradient). This module runs that recipe for
every row of a call at once:

* one sort for the whole call: a non-negative float32 keeps its order when its bits are read as
  an integer, so a radix sort of int32 keys orders every pixel of every row by decreasing error,
  and a stable radix sort of 1-byte row ids then groups the rows, keeping that order;
* the Jaccard differences come in closed form from exact integer counts, never as differences of
  rounded float32 cumulative Jaccards, so the loss stays exact past 2^24 pixels;
* pixels that cannot contribute are dropped before the sort: zero errors, and background pixels
  whose error is below every foreground error of their row (all foreground is already ranked above
  them, so their Jaccard increment is 0). This is exact, and usually removes most of the work;
* a custom autograd function keeps only the kept pixels' positions and gradients for backward,
  in position order so that backward writes sequentially; given logits, it also runs the softmax
  and chains its backward through the rows' sparse gradient (no dense probability gradient).

On CPU, float32 calls (every dtype but float64) run the same recipe fused in C (``native``,
``_native.c``: per row, a statistics pass, a pass that keeps pixels and counts them in buckets of
the row's key range, one scatter into the buckets and small in-cache sorts swept in parallel),
and ``LovaszSoftmaxLoss``'s softmax and backward too. The PyTorch code below is the fallback
without a C compiler, the float64 path (gradcheck), the ``sync="global"`` path and the
reference the tests hold the C kernel to.
On CUDA the dropping and the row selection are done by masking instead of compaction, so a call
makes no host synchronisation beyond the label check. The public losses are in ``functional``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from . import distributed, native, ops

_LOW31 = 0x7FFFFFFF


class Rows(NamedTuple):
    """Which pixels of ``x`` [B, C, S] make each row of a call, and how their errors are formed.

    Row ``r`` holds channel ``channel[r]`` of image ``image[r]`` (of every image when ``image`` is
    None: batch-level rows). Its foreground is the pixels labelled ``target[r]`` (labels [B, S],
    or [B, 1, S] read elementwise), or, when ``target`` is None, the pixels whose dense target
    [B, C, S] is 1 in its channel.
    Errors are ``1 - s x`` on the foreground and ``offset + s x`` elsewhere, with ``s = sign[r]``
    (+1 when None): ``offset`` 0 gives ``|y - p|`` on probabilities, 1 the hinge on logits.
    ``void`` is the label of pixels that take no part, or None when there are none.
    """

    image: torch.Tensor | None
    channel: torch.Tensor
    target: torch.Tensor | None
    void: int | None
    num_labels: int = 0
    sign: torch.Tensor | None = None
    offset: float = 0.0
    activation: str = "relu"  # or "elu+1" (hinge only): errors pass through elu(e) + 1


def jaccard_increments(fg_sorted: torch.Tensor, owned: list, dtype: torch.dtype) -> torch.Tensor:
    """Differences of the prefix Jaccard losses (the paper's ``lovasz_grad``), in closed form.

    For a pixel of a row sorted by decreasing error, with ``inter = |F| - (foreground at or
    before it)`` and ``union = |F| + (background at or before it)`` (exact integer counts, given
    as ``owned = [inter, union]`` and taken over, see ``_take``), the prefix Jaccard loss is
    ``1 - inter/union``. A foreground pixel lowers ``inter`` by one (increment ``1/union``); a
    background pixel raises ``union`` by one (increment ``inter / (union (union-1))``), except the
    first pixel of a row without foreground (``union`` is 1), whose increment is 1. Computed in
    ``dtype`` with two temporaries, reusing the buffers.
    """
    inter, union = _take(owned)
    union = _to_float(union, dtype)
    step = torch.sub(union, 1).mul_(union)
    step = torch.div(_to_float(inter, dtype), step, out=step)
    del inter
    step.masked_fill_(union <= 1, 1.0)
    return torch.where(fg_sorted, union.reciprocal_(), step, out=step)


def _to_float(counts: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``counts.to(dtype)``, converted within its own buffer when the sizes match (int32 to
    float32: an elementwise copy onto itself is safe); ``counts`` must be a temporary."""
    if counts.element_size() == torch.finfo(dtype).bits // 8:
        return counts.view(dtype).copy_(counts)
    return counts.to(dtype)


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 stays float64; every other float dtype (fp16, bf16, fp32) is computed in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _gather_rows(xd, rows, out=None):
    """The rows' channels of ``x``, laid out [G, R, S] (G = B for batch-level rows, else 1)."""
    batch, channels, size = xd.shape
    n_rows = rows.channel.numel()
    if rows.image is None:
        out = None if out is None else out.view(batch, n_rows, size)
        return torch.index_select(xd, 1, rows.channel, out=out)
    flat = rows.image * channels + rows.channel
    out = None if out is None else out.view(n_rows, size)
    return torch.index_select(xd.reshape(batch * channels, size), 0, flat, out=out).unsqueeze(0)


def _signed(values, rows):
    """Negates the rows of sign -1 (the symmetric hinge's second half), in place."""
    if rows.sign is not None:
        values.mul_(rows.sign.to(values.dtype).view(1, -1, 1))
    return values


def _label_errors(xd, labels, rows):
    """Pixel errors [G, R, S] of label-defined rows, their foreground, sizes and thresholds.

    Every pixel is first given its background error by one gather of the rows' channels; the
    foreground pixels — at most one row per pixel — are then overwritten by a scatter over the
    B·S pixels, rather than by a pass over all rows.
    """
    batch, _, size = xd.shape
    per_image = rows.image is not None
    groups, n_rows = (1 if per_image else batch), rows.channel.numel()
    numel = groups * n_rows * size
    errors = torch.empty(numel + 1, dtype=xd.dtype, device=xd.device)  # + a dummy last slot
    _signed(_gather_rows(xd, rows, out=errors[:numel]), rows)
    if rows.offset:
        errors.add_(rows.offset)

    # The row, if any, in which each pixel is foreground: table[image, label] -> row (or n_rows).
    # All pixel arithmetic is on the [B, S] grid with broadcast indices: no division, no loop.
    device = xd.device
    table = torch.full(
        (batch if per_image else 1, rows.num_labels), n_rows, dtype=torch.long, device=device
    )
    table[rows.image if per_image else 0, rows.target] = torch.arange(n_rows, device=device)
    image_index = torch.arange(batch, device=device).unsqueeze(1)
    label_index = labels.long()
    if per_image:
        label_index += image_index * rows.num_labels
    pixel_row = table.view(-1).index_select(0, label_index.view(-1)).view(batch, size)
    row = pixel_row.clamp(max=n_rows - 1)
    channel = rows.channel.index_select(0, row.view(-1)).view(batch, 1, size)
    own = xd.gather(1, channel).view(batch, size)
    if rows.sign is not None:
        own = own * rows.sign.to(own.dtype).index_select(0, row.view(-1)).view(batch, size)
    slot = row * size + torch.arange(size, device=device)
    if not per_image:
        slot += image_index * (n_rows * size)
    slot = torch.where(pixel_row < n_rows, slot, numel).view(-1)
    errors.scatter_(0, slot, (1.0 - own).view(-1))
    fg = torch.zeros(numel + 1, dtype=torch.bool, device=device).scatter_(0, slot, True)

    pixel_row, own = pixel_row.view(-1), own.view(-1)
    gts = torch.zeros(n_rows + 1, dtype=torch.long, device=device)
    gts.index_add_(0, pixel_row, torch.ones_like(pixel_row))
    own_max = torch.full((n_rows + 1,), -torch.inf, dtype=xd.dtype, device=device)
    own_max.scatter_reduce_(0, pixel_row, own, "amax")

    errors = errors[:numel].view(groups, n_rows, size)
    if rows.void is not None:
        void = labels == rows.void
        void = void.unsqueeze(1) if not per_image else void.index_select(0, rows.image)
        errors.masked_fill_(void.view(groups, -1, size), -torch.inf)  # never kept
    return errors, fg[:numel].view(groups, n_rows, size), gts[:n_rows], 1.0 - own_max[:n_rows]


def _dense_errors(xd, targets, rows):
    """Pixel errors [G, R, S] of rows whose foreground is read from a dense target.

    ``targets`` is [B, C, S] 0/1 (multilabel: foreground where 1) or [B, 1, S] labels shared by
    every row (the hinge: foreground where the label is ``target[r]``). Elementwise: the cheap
    path when rows are few and pixels many.
    """
    x = _signed(_gather_rows(xd, rows), rows)
    y = _gather_rows(targets, rows)
    target = 1 if rows.target is None else rows.target.to(y.dtype).view(1, -1, 1)
    fg = y == target
    x.add_(rows.offset)  # the background error; the foreground's is 1 - x = (1 + offset) - this
    errors = torch.where(fg, (1.0 + rows.offset) - x, x)
    del x
    if rows.void is not None:
        errors.masked_fill_(y == rows.void, -torch.inf)
    gts = fg.sum((0, 2))
    threshold = torch.where(fg, errors, torch.inf).amin((0, 2))
    return errors, fg, gts, threshold


def _take(owned: list) -> list:
    """The tensors of ``owned``, which is emptied: the callee then holds the only references and
    frees each big temporary as soon as it is done with it, which lowers the peak memory."""
    taken = list(owned)
    owned.clear()
    return taken


def _compact(owned, rows, channels, compact, in_x=True):
    """The kept pixels as flat arrays: errors, foreground, row, and position in ``x`` [B, C, S]
    (or, ``in_x`` False, in the [G, R, S] layout of the errors).

    ``owned`` is ``[errors, fg, keep]``, [G, R, S] each, taken over (see ``_take``).

    On CPU they are gathered (``compact``; row is None when there is one row) in the layout of
    ``errors``, and the number kept in each of its G·R blocks of S pixels is returned too; on CUDA
    every pixel stays (block counts None) and the dropped ones are sent to a dummy last row, which
    sorts last. Rows and positions come from per-row offsets expanded over the rows' sizes,
    without divisions.
    """
    errors, fg, keep = _take(owned)
    groups, n_rows, size = errors.shape
    device = errors.device
    row_ids = torch.arange(n_rows, device=device)
    image = (
        rows.image.unsqueeze(0)
        if rows.image is not None
        else torch.arange(groups, device=device).unsqueeze(1)
    )
    # Where row r of group g starts in x, less where it starts in ``errors``.
    offset = (image * channels + rows.channel) - (
        torch.arange(groups, device=device).unsqueeze(1) * n_rows + row_ids
    )
    offset = (offset * size).view(-1)
    # Positions are kept for backward: int32 where they fit, rows as 1-byte ids.
    position_dtype = torch.int32 if (groups * n_rows + 1) * size < 2**31 else torch.int64
    row_dtype = _small_int(n_rows + 1)
    if not compact:
        position = torch.arange(errors.numel(), device=device).view(groups, n_rows, size)
        if in_x:
            position += offset.view(groups, n_rows, 1)
        row = torch.where(keep, row_ids.view(1, n_rows, 1), n_rows).to(row_dtype).view(-1)
        return errors.view(-1), fg.view(-1), row, position.view(-1).to(position_dtype), None
    numel = errors.numel()
    kept = keep.view(-1).nonzero().squeeze(1)
    del keep
    block_starts = torch.arange(0, numel + 1, size, device=device)
    counts = torch.diff(torch.searchsorted(kept, block_starts))
    n = kept.numel()
    err = errors.view(-1).index_select(0, kept)
    del errors
    is_fg = fg.view(-1).index_select(0, kept)
    del fg
    position = kept.to(position_dtype)
    del kept
    if in_x:
        position += torch.repeat_interleave(offset.to(position_dtype), counts, output_size=n)
    row = None
    if n_rows > 1:
        row_ids = row_ids.to(row_dtype).repeat(groups)
        row = torch.repeat_interleave(row_ids, counts, output_size=n)
    return err, is_fg, row, position, counts


def _small_int(values: int) -> torch.dtype:
    """The narrowest integer dtype radix sort handles for ``values`` distinct ids."""
    if values <= 255:
        return torch.uint8
    return torch.int16 if values <= 2**15 else torch.int32


_SIGN = -(2**31)


def _error_keys(err, is_fg):
    """int32 keys that sort ascending as (decreasing error, foreground first), float32 errors.

    A non-negative float32 keeps its order when its bits are read as an integer; the 31 bits of
    ``_LOW31 - bits`` shifted left leave the lowest bit for the background flag, and flipping
    the sign bit turns that unsigned order into int32's. Carrying the flag in the key spares a
    gather of the flags in sorted order (ties between a foreground and a background pixel of
    equal error may go either way: the Lovász extension does not depend on their order).
    """
    key = torch.bitwise_left_shift(_LOW31 - err.view(torch.int32), 1)
    return key.bitwise_or_(~is_fg).bitwise_xor_(_SIGN)


def _decode_keys(key):
    """The errors (float32) and foreground flags that ``_error_keys`` packed."""
    fg = torch.bitwise_and(key, 1).eq(0)
    bits = key.bitwise_xor_(_SIGN).bitwise_right_shift_(1).bitwise_and_(_LOW31)
    return torch.sub(_LOW31, bits, out=bits).view(torch.float32), fg


def _sort_in_place(key: torch.Tensor, stable: bool = False):
    """``torch.sort(key)``, with the sorted values written over ``key`` on CPU (one buffer fewer
    at the peak of the call); ``key`` must be a temporary of the caller's."""
    if key.device.type != "cpu":
        return torch.sort(key, stable=stable)
    order = torch.empty(key.shape, dtype=torch.long)
    return torch.sort(key, stable=stable, out=(key, order))


def _sort(owned, rows):
    """One sort of pixels by (row, decreasing error); ``row`` None means a single row.

    ``owned`` is ``[err, is_fg, row]``, flat, taken over (see ``_take``).

    Returns the sorted errors, foreground flags and rows (None for a single row), the number of
    pixels in each of the ``rows`` rows plus the dummy row, and the sort order.
    """
    err, is_fg, row = _take(owned)
    if err.dtype == torch.float64:
        # float64 (gradcheck, reference runs): no room for the row in a 64-bit key, so two
        # stable sorts, by decreasing error and then by row.
        order = torch.sort(err, descending=True, stable=True)[1]
        if row is not None:
            order = order.index_select(0, torch.sort(row.index_select(0, order), stable=True)[1])
            row = row.index_select(0, order)
        fg_sorted, err = is_fg.index_select(0, order), err.index_select(0, order)
    elif row is None:
        # A single row: the error's bits and the foreground flag make one int32 key, which
        # radix-sorts fastest.
        key = _error_keys(err, is_fg)
        del err, is_fg
        key, order = _sort_in_place(key)
        err, fg_sorted = _decode_keys(key)
    else:
        # By decreasing error (int32 key), then stably by row (a 1- or 2-byte key): two radix
        # sorts that move less memory than one sort of 64-bit (row, error) keys.
        key = _error_keys(err, is_fg)
        del err, is_fg
        key, order = _sort_in_place(key)
        if order.numel() < 2**31:  # the largest buffer kept across the row sort: halve it
            order = order.to(torch.int32)
        by_row = row.to(_small_int(rows + 1)).index_select(0, order)
        del row
        row, regroup = _sort_in_place(by_row, stable=True)
        del by_row
        order = order.index_select(0, regroup)
        key = key.index_select(0, regroup)
        del regroup
        err, fg_sorted = _decode_keys(key)
    n = err.numel()
    if row is None:
        counts = torch.zeros(rows + 1, dtype=torch.long, device=err.device)
        counts[0] = n
    else:
        starts = torch.searchsorted(row, torch.arange(rows + 1, dtype=row.dtype, device=err.device))
        counts = torch.diff(starts, append=starts.new_full((1,), n))
    return err, fg_sorted, row, counts, order


def _expand_rows(values, starts, n):
    """Per-row constants repeated over each row's pixels: a cumulative sum of their jumps at the
    rows' first pixels (no 64-bit index, unlike ``repeat_interleave``)."""
    jumps = torch.diff(values, prepend=values.new_zeros(1))
    return values.new_zeros(n + 1).index_add_(0, starts, jumps)[:n].cumsum_(0)


def _prefix_counts(fg_sorted, counts, gts):
    """``inter`` and ``union`` of each sorted pixel's prefix within its row, as exact integers.

    With ``fg_seen`` the running count of foreground pixels over all sorted pixels, a pixel ``i``
    of row ``r`` (which starts at ``start_r``, after ``before_r`` foreground pixels) has
    ``inter = |F_r| + before_r - fg_seen_i`` and ``union = inter + (i + 1 - start_r)``.
    """
    n = fg_sorted.numel()
    dtype = torch.int32 if n < 2**30 else torch.int64  # union <= |F_r| + n <= 2n
    starts = counts.cumsum(0) - counts
    # seen[i] = foreground among the first i sorted pixels; the buffer then holds i itself.
    seen = torch.empty(n + 1, dtype=dtype, device=fg_sorted.device)
    seen[0] = 0
    torch.cumsum(fg_sorted, 0, dtype=dtype, out=seen[1:])
    row_inter = torch.cat([gts, gts.new_zeros(1)]).to(dtype) + seen.index_select(0, starts)
    inter = _expand_rows(row_inter, starts, n).sub_(seen[1:])
    union = _expand_rows((starts - 1).to(dtype), starts, n).neg_()
    union += torch.arange(n, dtype=dtype, device=fg_sorted.device, out=seen[1:])
    return inter, union.add_(inter), starts


def _row_sums(values, starts, n_rows, chunk=1 << 20):
    """The sums [R] of ``values`` over each row (row r: ``values[starts[r]:starts[r + 1]]``).

    Differences of a float64 running sum at the rows' bounds: a scan, deterministic, with no
    atomic adds (on a GPU, adding millions of values into a few row totals serialises on their
    addresses: it took four fifths of the call). Converted to float64 a chunk at a time: a
    float64 copy of ``values`` would be the largest temporary of the call. No host sync.
    """
    n = values.numel()
    bounds = starts[: n_rows + 1]
    at_bound = torch.zeros(n_rows + 1, dtype=torch.float64, device=values.device)
    carry = torch.zeros((), dtype=torch.float64, device=values.device)
    for begin in range(0, n, chunk):
        end = min(n, begin + chunk)
        running = values[begin:end].to(torch.float64).cumsum_(0)
        inside = (bounds > begin) & (bounds <= end)
        offset = (bounds - begin - 1).clamp_(0, end - begin - 1)
        at_bound = torch.where(inside, running.index_select(0, offset) + carry, at_bound)
        carry = carry + running[-1]
    return at_bound[1:] - at_bound[:-1]


class _LovaszExtension(torch.autograd.Function):
    """Row losses: the Lovász extension of the Jaccard loss over each row's pixel errors, in
    PyTorch, in the paper's four steps (numbered in ``forward``): errors, sort, Jaccard
    increments, dot. ``_native.c`` does the same four: ``lovasz_count`` the errors and the keep
    rule, ``lovasz_rows`` the sort (buckets, then small sorts) and, in one sweep, increments and
    dot.

    Backward needs only the gradient of each row's loss with respect to ``x``, known once the
    forward pass has sorted: the kept pixels' positions and gradients are stored instead of the
    sort's intermediate tensors (pixels that were not kept have zero gradient).
    """

    @staticmethod
    def forward(ctx, x, y, rows: Rows, compact: bool, sync: bool, softmax: bool):
        channels = x.shape[1]
        dtype = compute_dtype(x)
        xd = x.to(dtype).contiguous()
        probas = None
        if softmax:  # x are logits: the rows read probabilities, backward chains the softmax
            xd = probas = torch.softmax(xd, dim=1)

        # 1. Errors: every row's pixel errors, and which of them can contribute at all.
        if y.dim() == 3:
            errors, fg, gts, threshold = _dense_errors(xd, y, rows)
        else:
            errors, fg, gts, threshold = _label_errors(xd, y, rows)
        del xd
        if rows.activation == "elu+1":  # a monotone map: the order, hence the increments, stay
            errors = torch.nn.functional.elu(errors).add_(1)
            # Vectorised and scalar exp may differ in the last ulp: lower the threshold a little
            # (keeping a few more pixels, whose increments are 0, is still exact).
            threshold = torch.nn.functional.elu(threshold).add_(1)
            threshold *= 1 - 8 * torch.finfo(dtype).eps
        n_rows = errors.shape[1]
        # Below the smallest foreground error every pixel's Jaccard increment is 0; a row without
        # foreground keeps only its largest error, whose increment is 1. Zero errors add nothing.
        no_fg = gts == 0
        if sync:
            gts, threshold = distributed.all_reduce_rows(gts, threshold)
            no_fg = gts == 0
        if sync or not compact or bool(no_fg.any()):
            row_max = errors.amax((0, 2))
            if sync:
                row_max = distributed.all_reduce_max(row_max)
            threshold = torch.where(no_fg, row_max, threshold)
        keep = errors >= threshold.clamp_min(torch.finfo(dtype).tiny).view(1, n_rows, 1)
        owned = [errors, fg, keep]
        del errors, fg, keep
        err, is_fg, row, position, block_counts = _compact(
            owned, rows, channels, compact or sync, in_x=not softmax
        )
        mine = None
        if sync:
            err, is_fg, row, mine = distributed.gather_pixels(err, is_fg, row)
        owned = [err, is_fg, row]
        del err, is_fg, row

        # 2. Sort: by row, then by decreasing error.
        err, fg_sorted, row, counts, order = _sort(owned, n_rows)

        # 3. Jaccard increments: the differences of the prefix Jaccard losses, exactly.
        inter, union, starts = _prefix_counts(fg_sorted, counts, gts)
        owned = [inter, union]
        del inter, union
        increments = jaccard_increments(fg_sorted, owned, dtype)
        n = err.numel()
        if not compact:  # the masked pixels, sorted last in the dummy row, take no part
            increments.masked_fill_(torch.arange(n, device=x.device) >= starts[-1], 0)
        # The gradient through elu(e) + 1 is min(elu(e) + 1, 1).
        elu = rows.activation == "elu+1"
        increments_x = increments * err.clamp(max=1) if elu else increments

        # 4. Dot: the sorted errors with the increments (the loss), the increments (the gradient).
        losses = _row_sums(err.mul_(increments), starts, n_rows)
        del err, row

        if ctx.needs_input_grad[0]:
            # Foreground pixels lower their row's loss as their error grows: negate in place.
            grad = increments_x.mul_(fg_sorted.to(torch.int8).mul_(-2).add_(1))
            del increments, increments_x
            # Back to the pixels' compacted order — by row, then by position in x — so that
            # backward writes x's gradient in one sequential pass rather than a random scatter.
            grad = torch.empty_like(grad).index_copy_(0, order.long(), grad)
            if mine is not None:  # this process's pixels, scaled for DDP's gradient averaging
                grad = grad[mine[0] : mine[1]] * distributed.world_size()
            ctx.save_for_backward(position, grad, block_counts, probas)
            ctx.layout = (x.shape[0] if rows.image is None else 1, n_rows)
            ctx.rows, ctx.block_repeat = rows, ctx.layout[0]
        ctx.input_shape, ctx.input_dtype = x.shape, x.dtype
        return losses.to(dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_losses):
        position, values, block_counts, probas = ctx.saved_tensors
        groups, n_rows = ctx.layout
        rows = ctx.rows
        weights = grad_losses.to(values.dtype)
        if rows.sign is not None:
            weights = weights * rows.sign.to(values.dtype)
        if n_rows == 1:
            values = values * weights
        elif block_counts is None:  # every pixel of the [G, R, S] layout, dropped ones at 0
            values = (values.view(groups, n_rows, -1) * weights.view(1, n_rows, 1)).view(-1)
        else:  # kept pixels, block after block (of the [G, R, S] layout, or row after row)
            weights = weights.repeat(ctx.block_repeat)
            values = values * torch.repeat_interleave(
                weights, block_counts, output_size=values.numel()
            )
        if probas is not None:
            grad = _softmax_backward(probas, position, values, rows, groups)
        else:
            grad = values.new_zeros(ctx.input_shape.numel())
            grad.index_add_(0, position, values)
        return grad.view(ctx.input_shape).to(ctx.input_dtype), None, None, None, None, None


def _rows_of_probas(probas, rows):
    """The rows' channels of ``probas``: a view when the rows are every channel in order (all
    classes present, the common batch-level case, checked on CPU only), else a gathered copy."""
    batch, channels, _ = probas.shape
    if probas.device.type == "cpu" and rows.channel.numel() == (
        channels if rows.image is None else batch * channels
    ):
        planes = rows.channel if rows.image is None else rows.image * channels + rows.channel
        if torch.equal(planes, torch.arange(planes.numel(), device=planes.device)):
            return probas
    return _gather_rows(probas, rows)


def _softmax_backward(probas, position, values, rows, groups):
    """The logits' gradient from the rows' sparse gradient on the probabilities.

    With ``g`` the gradient on the probabilities ``p`` (nonzero only on the rows' channels), the
    softmax gives ``p * (g - sum_c g_c p_c)``. ``g * p`` is formed on the rows' [G, R, S] planes
    only (``position`` indexes them), so the one pass over all B·C·S values is ``-p * dot``:
    no dense ``g``, and no generic softmax backward reading it.
    """
    batch, channels, size = probas.shape
    n_rows = rows.channel.numel()
    gp = values.new_zeros(groups * n_rows * size).index_add_(0, position, values)
    gp = gp.view(groups, n_rows, size)
    gp *= _rows_of_probas(probas, rows).view(groups, n_rows, size)
    if rows.image is None:  # batch-level rows: group g is image g
        dot = gp.sum(1)
    else:
        dot = gp.new_zeros(batch, size).index_add_(0, rows.image, gp.view(n_rows, size))
    grad = torch.mul(probas, dot.neg_().unsqueeze(1))
    if rows.image is None:
        grad.index_add_(1, rows.channel, gp)
    else:
        planes = rows.image * channels + rows.channel
        grad.view(batch * channels, size).index_add_(0, planes, gp.view(n_rows, size))
    return grad


def lovasz_rows(
    x: torch.Tensor,
    y: torch.Tensor,
    rows: Rows,
    sync: bool = False,
    softmax: bool = False,
    probabilities_of: str | None = None,
) -> torch.Tensor:
    """Per-row Lovász losses [R] of ``x`` [B, C, S] against labels [B, S] or targets [B, C, S].

    Two implementations of the same recipe: the C kernel behind ``torch.ops.lovaszseg.rows``
    (float32 on CPU, whenever it is available) and the PyTorch one above (float64, CUDA, the
    smooth hinge, ``sync``, or no kernel), where dropped pixels are compacted away on CPU and
    masked (no host sync) on GPU. With ``sync``, the rows are batch-level and span every process
    of the default ``torch.distributed`` group. With ``softmax``, ``x`` are logits whose softmax
    over C the rows read. ``probabilities_of`` (a loss's name): ``x`` must lie in [0, 1]
    (``ValueError`` otherwise), checked by the kernel as it reads ``x``, or by one pass.
    """
    if not sync and native.usable(x, compute_dtype(x), rows.activation):
        losses, x_range = _kernel_rows(x, y, rows, softmax, check_range=bool(probabilities_of))
        if probabilities_of:
            _check_probabilities(*x_range.tolist(), probabilities_of)
        return losses
    if probabilities_of:
        _check_probabilities(*(float(v) for v in torch.aminmax(x.detach())), probabilities_of)
    return _LovaszExtension.apply(x, y, rows, x.device.type == "cpu", sync, softmax)


def _check_probabilities(low: float, high: float, name: str) -> None:
    if low < -1e-5 or high > 1.0 + 1e-5:  # a rounding error of a softmax is no mistake
        raise ValueError(
            f"{name}: expected probabilities in [0, 1], got values in [{low:.4g}, {high:.4g}]; "
            "for logits use LovaszSoftmaxLoss, which applies the softmax itself"
        )


def _kernel_rows(x, y, rows, softmax, check_range=False):
    """``lovasz_rows`` by the C kernel: its inputs laid out as it reads them, one operator call.
    Returns the losses and (with ``check_range``) the range of the values read."""
    batch, channels, size = x.shape
    dense = rows.target is None
    labels = y.reshape(batch, channels if dense else 1, size)
    if labels.dtype not in (torch.uint8, torch.int32):
        labels = labels.to(torch.int32)

    def indices(t):
        return None if t is None else t.to(torch.int64).contiguous()

    losses, *_, x_range = ops.rows(
        x.to(torch.float32).contiguous(),
        labels.contiguous(),
        indices(rows.image),
        indices(rows.channel),
        indices(rows.target),
        None if rows.sign is None else rows.sign.to(torch.float32).contiguous(),
        float(rows.offset),
        -1 if rows.void is None else int(rows.void),
        softmax,
        check_range,
    )
    return losses.to(torch.float32), x_range
