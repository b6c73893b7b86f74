"""The Lovász hinge and Lovász-softmax losses, batched over images and classes.

Berman, Rannen Triki & Blaschko, *The Lovász-Softmax loss*, CVPR 2018. For each row (a class, or an
(image, class) pair) the paper's recipe is: compute the pixel errors, sort them in decreasing
order, take the Jaccard loss of each prefix of that order, and dot the sorted errors with the
prefix losses' differences (the Lovász extension's gradient). This module runs that recipe for
every row of a call at once:

* one sort for the whole call: each pixel becomes an ``int64`` key ``row | error | foreground``
  (a non-negative float32 keeps its order when its bits are read as an integer), so one radix
  sort groups the rows and orders each row by decreasing error;
* the Jaccard differences come in closed form from exact integer counts, never as differences of
  rounded float32 cumulative Jaccards, so the loss stays exact past 2^24 pixels;
* pixels that cannot contribute are dropped before the sort: zero errors, and background pixels
  whose error is below every foreground error of their row (all foreground is already ranked above
  them, so their Jaccard increment is 0). This is exact, and usually removes most of the work;
* a custom autograd function keeps one float32 gradient per input element for backward.

On CUDA the dropping and the row selection are done by masking instead of compaction, so a call
makes no host synchronisation beyond the (optional) label check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

__all__ = ["lovasz_hinge", "lovasz_softmax"]

_LOW31 = 0x7FFFFFFF


def jaccard_increments(
    fg_sorted: torch.Tensor, union: torch.Tensor, inter: torch.Tensor
) -> torch.Tensor:
    """Differences of the prefix Jaccard losses (the paper's ``lovasz_grad``), in closed form.

    For a pixel of a row sorted by decreasing error, with ``inter = |F| - (foreground at or
    before it)`` and ``union = |F| + (background at or before it)`` (exact counts, as floats), the
    prefix Jaccard loss is ``1 - inter/union``. A foreground pixel lowers ``inter`` by one
    (increment ``1/union``); a background pixel raises ``union`` by one (increment
    ``inter / (union (union-1))``), except the first pixel of a row without foreground (``union``
    is 1), whose increment is 1.
    """
    bg_step = torch.where(union > 1, inter / (union * (union - 1)), 1.0)
    return torch.where(fg_sorted, union.reciprocal(), bg_step)


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 stays float64; every other float dtype (fp16, bf16, fp32) is computed in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _sort_rows(errors, fg, keep, compact):
    """One sort of every kept pixel by (row, decreasing error).

    ``errors``, ``fg`` and ``keep`` are [G, R, S]: row ``r`` holds ``[:, r, :]``. Returns the sorted
    errors and foreground flags, the number of sorted pixels in each row plus one last entry for
    the pixels that are masked rather than left out (CUDA), and each sorted pixel's flat position.
    """
    groups, rows, size = errors.shape
    if compact:
        position = keep.view(-1).nonzero().squeeze(1)
        err = errors.view(-1).index_select(0, position)
        is_fg = fg.view(-1).index_select(0, position)
        row = None if rows == 1 else torch.div(position, size, rounding_mode="floor")
        if row is not None and groups > 1:
            row.remainder_(rows)
    else:
        err, is_fg = errors.view(-1), fg.view(-1)
        row_ids = torch.arange(rows, device=errors.device).view(1, rows, 1)
        row = torch.where(keep, row_ids, rows).view(-1)

    if err.dtype == torch.float64:
        # float64 (gradcheck, reference runs): no room for the row in a 64-bit key, so two
        # stable sorts, by decreasing error and then by row.
        order = torch.sort(err, descending=True, stable=True)[1]
        if row is not None:
            order = order[torch.sort(row[order], stable=True)[1]]
            row = row[order]
        fg_sorted, err = is_fg[order], err[order]
    elif row is None:
        # A single row: the error's bits alone make an int32 key, which radix-sorts fastest.
        key, order = torch.sort(_LOW31 - err.view(torch.int32))
        fg_sorted, err = is_fg[order], (_LOW31 - key).view(torch.float32)
    else:
        key = (_LOW31 - err.view(torch.int32).long()).bitwise_left_shift_(1).bitwise_or_(is_fg)
        key.bitwise_or_(row.bitwise_left_shift(32))
        key, order = torch.sort(key)
        row = key.bitwise_right_shift(32)
        fg_sorted = key.bitwise_and(1).bool()
        err = (_LOW31 - key.bitwise_right_shift_(1).bitwise_and_(_LOW31)).int().view(torch.float32)

    n = err.numel()
    if row is None:
        counts = torch.tensor([n, 0], device=err.device)
    else:
        starts = torch.searchsorted(row, torch.arange(rows + 1, device=err.device))
        counts = torch.diff(starts, append=starts.new_full((1,), n))
    if compact:
        order = position[order]
    return err, fg_sorted, counts, order


def _prefix_counts(fg_sorted, counts, gts):
    """``inter`` and ``union`` of each sorted pixel's prefix within its row, as exact integers."""
    n = fg_sorted.numel()
    index_dtype = torch.int32 if n < 2**31 else torch.int64
    starts = counts.cumsum(0) - counts
    fg_seen = fg_sorted.cumsum(0, dtype=index_dtype)
    if n:
        fg_before = (fg_seen - fg_sorted.view(torch.uint8))[starts.clamp(max=n - 1)]
    else:
        fg_before = torch.zeros_like(starts)
    gts = torch.cat([gts, gts.new_zeros(1)]) + fg_before
    inter = torch.repeat_interleave(gts.to(index_dtype), counts, output_size=n).sub_(fg_seen)
    union = torch.repeat_interleave((gts - starts).to(index_dtype), counts, output_size=n)
    union += torch.arange(1, n + 1, dtype=index_dtype, device=fg_sorted.device)
    return inter, union.sub_(fg_seen), starts


class Rows(NamedTuple):
    """Which pixels of ``x`` [B, C, S] form each row of a call.

    Row ``r`` holds channel ``channel[r]`` of image ``image[r]`` (of every image when ``image`` is
    None: batch-level rows); its foreground is the pixels labelled ``target[r]``. ``void`` is the
    label of pixels that take no part (the largest label value), or None when there are none.
    """

    image: torch.Tensor | None
    channel: torch.Tensor
    target: torch.Tensor
    void: int | None
    num_labels: int


def _row_errors(xd, labels, rows, bg_offset):
    """Pixel errors of every row, laid out [G, R, S], and where each row's foreground lies.

    Every pixel is first given its background error (``p``, or ``1 + x`` for the hinge), by one
    gather of the rows' channels; then the foreground pixels — one row at most per pixel — are
    overwritten with ``1 - x`` by a scatter over the B·S pixels rather than a pass over all rows.
    """
    batch, channels, size = xd.shape
    n_rows = rows.channel.numel()
    if rows.image is None:
        groups, flat_rows = batch, None
        gather = xd.index_select(1, rows.channel)
    else:
        groups, flat_rows = 1, rows.image * channels + rows.channel
        gather = xd.reshape(batch * channels, size).index_select(0, flat_rows).unsqueeze(0)
    numel = groups * n_rows * size
    errors = torch.empty(numel + 1, dtype=xd.dtype, device=xd.device)  # + a dummy last slot
    errors[:numel].view(groups, n_rows, size).copy_(gather)
    del gather
    if bg_offset:
        errors.add_(bg_offset)

    # The row, if any, in which each pixel is foreground: table[image, label] -> row (or n_rows).
    tables = batch if rows.image is not None else 1
    table = torch.full((tables, rows.num_labels), n_rows, dtype=torch.long, device=xd.device)
    table[(0 if rows.image is None else rows.image), rows.target] = torch.arange(
        n_rows, device=xd.device
    )
    pixel_image = torch.arange(batch, device=xd.device).unsqueeze(1)
    label_index = labels.long() + (pixel_image * rows.num_labels if tables > 1 else 0)
    pixel_row = table.view(-1)[label_index].view(-1)
    pixel = torch.arange(batch * size, device=xd.device)
    if xd.device.type == "cpu":
        pixel = (pixel_row < n_rows).nonzero().squeeze(1)
        pixel_row = pixel_row.index_select(0, pixel)
    image, spatial = torch.div(pixel, size, rounding_mode="floor"), pixel.remainder(size)
    is_fg = pixel_row < n_rows
    row = pixel_row.clamp(max=n_rows - 1)
    channel = rows.channel[row]
    own = xd.view(-1)[(image * channels + channel) * size + spatial]
    slot = row * size + spatial
    if rows.image is None:
        slot += image * (n_rows * size)
    slot = torch.where(is_fg, slot, numel)
    errors.index_put_((slot,), 1.0 - own)
    fg = torch.zeros(numel + 1, dtype=torch.bool, device=xd.device)
    fg[slot] = True

    gts = torch.zeros(n_rows + 1, dtype=torch.long, device=xd.device)
    gts.index_add_(0, pixel_row, torch.ones_like(pixel_row))
    own_max = torch.full((n_rows + 1,), -torch.inf, dtype=xd.dtype, device=xd.device)
    own_max.scatter_reduce_(0, pixel_row, own, "amax")

    errors = errors[:numel].view(groups, n_rows, size)
    if rows.void is not None:
        void = labels == rows.void
        void = void.unsqueeze(1) if rows.image is None else void.index_select(0, rows.image)
        errors.masked_fill_(void.view(groups, -1, size), 0)  # void pixels are never kept
    return errors, fg[:numel].view(groups, n_rows, size), gts[:n_rows], 1.0 - own_max[:n_rows]


class _LovaszExtension(torch.autograd.Function):
    """Row losses: the Lovász extension of the Jaccard loss over each row's pixel errors.

    Backward needs only the gradient of each row's loss with respect to ``x``, known once the
    forward pass has sorted: the kept pixels' positions and increments are stored instead of the
    sort's intermediate tensors (pixels that were not kept have zero gradient).
    """

    @staticmethod
    def forward(ctx, x, labels, rows: Rows, bg_offset: float, compact: bool):
        channels, size = x.shape[1:]
        dtype = compute_dtype(x)
        errors, fg, gts, threshold = _row_errors(x.to(dtype).contiguous(), labels, rows, bg_offset)
        groups, n_rows, _ = errors.shape
        # Below the smallest foreground error every pixel's Jaccard increment is 0; a row without
        # foreground keeps only its largest error, whose increment is 1. Zero errors add nothing.
        no_fg = gts == 0
        if not compact or bool(no_fg.any()):
            threshold = torch.where(no_fg, errors.amax((0, 2)), threshold)
        keep = errors >= threshold.clamp_min(torch.finfo(dtype).tiny).view(1, n_rows, 1)
        err, fg_sorted, counts, order = _sort_rows(errors, fg, keep, compact)
        del errors, fg, keep

        inter, union, starts = _prefix_counts(fg_sorted, counts, gts)
        increments = jaccard_increments(fg_sorted, union.to(dtype), inter.to(dtype))
        del inter, union
        n = err.numel()
        if not compact:  # the masked pixels, sorted last, take no part
            increments.masked_fill_(torch.arange(n, device=x.device) >= starts[-1], 0)

        # Row losses: the sums of error * increment over each row's segment, in float64.
        totals = (err * increments).cumsum(0, dtype=torch.float64)
        totals = torch.cat([totals.new_zeros(1), totals])
        losses = totals[(starts + counts)[:n_rows]] - totals[starts[:n_rows]]

        if ctx.needs_input_grad[0]:
            row = torch.repeat_interleave(
                torch.arange(n_rows + 1, device=x.device), counts, output_size=n
            )
            if rows.image is None:
                base = rows.channel * size
            else:
                base = (rows.image * channels + rows.channel) * size
            base = torch.cat([base, base.new_zeros(1)])
            position = base[row] + order.remainder(size)
            if groups > 1:
                group = torch.div(order, n_rows * size, rounding_mode="floor")
                position += group * (channels * size)
            ctx.save_for_backward(position, torch.where(fg_sorted, -increments, increments), counts)
        ctx.input_shape, ctx.input_dtype = x.shape, x.dtype
        return losses.to(dtype)

    @staticmethod
    def backward(ctx, grad_losses):
        position, values, counts = ctx.saved_tensors
        weights = torch.cat([grad_losses.to(values.dtype), values.new_zeros(1)])
        weights = torch.repeat_interleave(weights, counts, output_size=values.numel())
        grad = values.new_zeros(ctx.input_shape.numel())
        grad.index_add_(0, position, values * weights)
        return grad.view(ctx.input_shape).to(ctx.input_dtype), None, None, None, None


def _lovasz_rows(x, labels, rows, bg_offset):
    """Row losses; dropped pixels are compacted away on CPU and masked (no host sync) on GPU."""
    return _LovaszExtension.apply(x, labels, rows, bg_offset, x.device.type == "cpu")


def _weighted_mean(losses, weights, group, n_groups):
    """Mean of ``losses`` within each group, weighted; a group of zero weight contributes 0."""
    weights = weights.to(losses.dtype)
    num = losses.new_zeros(n_groups).index_add_(0, group, losses * weights)
    den = losses.new_zeros(n_groups).index_add_(0, group, weights)
    return num / den.clamp_min(torch.finfo(losses.dtype).tiny)


def _flatten_labels(labels, batch_shape, name):
    """Labels [B, *] (or [B, 1, *]) → [B, S], checked against the spatial shape of the scores."""
    if labels.dim() == len(batch_shape) + 1 and labels.shape[1] == 1:
        labels = labels.squeeze(1)
    if tuple(labels.shape) != tuple(batch_shape):
        raise ValueError(
            f"{name}: labels of shape {tuple(labels.shape)} do not match the scores, which expect "
            f"labels of shape {tuple(batch_shape)} ([B, *spatial])"
        )
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"{name}: labels must be an integer or bool tensor, got {labels.dtype}")
    return labels.reshape(labels.shape[0], -1)


def _check_label_values(labels, valid, num_classes, ignore_index, name):
    bad = (labels < 0) | (labels >= num_classes)
    if valid is not None:
        bad &= valid
    if bool(bad.any()):
        values = torch.unique(labels[bad])[:8].tolist()
        raise ValueError(
            f"{name}: labels contain {values} outside [0, {num_classes})"
            + (f" that are not ignore_index={ignore_index}" if ignore_index is not None else "")
            + "; pass ignore_index for void pixels"
        )


def lovasz_hinge(
    logits: torch.Tensor,
    labels: torch.Tensor,
    per_image: bool = True,
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Binary Lovász hinge loss on raw logits (the authors' ``lovasz_hinge``).

    Args:
        logits: [B, *] or [B, 1, *] raw scores of the foreground class, any float dtype.
        labels: [B, *] binary labels (0/1, bool, or ``ignore_index``), any integer dtype.
        per_image: average the per-image losses over the batch (an image without a valid pixel
            contributes 0); otherwise one loss over all pixels of the batch.
        ignore_index: label value whose pixels are left out.

    Returns:
        a 0-d tensor, float32 (float64 for float64 inputs).
    """
    if logits.dim() < 1 or logits.numel() == 0:
        raise ValueError(f"lovasz_hinge: expected logits [B, *], got shape {tuple(logits.shape)}")
    if logits.dim() >= 2 and logits.shape[1] == 1 and labels.dim() == logits.dim() - 1:
        logits = logits.squeeze(1)
    labels = _flatten_labels(labels, logits.shape, "lovasz_hinge")
    batch = logits.shape[0]
    x = logits.reshape(batch, 1, -1)
    valid = None if ignore_index is None else labels != ignore_index
    if labels.dtype != torch.bool:
        _check_label_values(labels, valid, 2, ignore_index, "lovasz_hinge")
    column = labels.to(torch.uint8)
    void = None
    if valid is not None and (x.device.type != "cpu" or not bool(valid.all())):
        void, column = 2, torch.where(valid, column, 2)
    device = x.device
    if per_image:
        images = torch.arange(batch, device=device)
        rows = Rows(images, torch.zeros_like(images), torch.ones_like(images), void, 3)
        return _lovasz_rows(x, column, rows, 1.0).mean()
    one = torch.ones(1, dtype=torch.long, device=device)
    return _lovasz_rows(x, column, Rows(None, one - 1, one, void, 3), 1.0)[0]


def _class_selection(classes, num_classes, device):
    """``classes`` → (candidate class ids, whether only present ones count)."""
    if isinstance(classes, str):
        if classes not in ("present", "all"):
            raise ValueError(
                f"lovasz_softmax: classes={classes!r} is not 'present', 'all' or a list of class ids"
            )
        return torch.arange(num_classes, device=device), classes == "present"
    if isinstance(classes, torch.Tensor):
        classes = classes.tolist()
    if not isinstance(classes, Sequence) or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in classes
    ):
        raise ValueError(
            f"lovasz_softmax: classes={classes!r} is not 'present', 'all' or a list of int ids"
        )
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad or not classes:
        raise ValueError(
            f"lovasz_softmax: classes={list(classes)} must be a non-empty list of ids in "
            f"[0, {num_classes})"
        )
    return torch.tensor(sorted(set(classes)), device=device), False


def lovasz_softmax(
    probas: torch.Tensor,
    labels: torch.Tensor,
    classes: str | Sequence[int] = "present",
    per_image: bool = False,
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Multi-class Lovász-softmax loss on probabilities (the authors' ``lovasz_softmax``).

    Args:
        probas: [B, C, *] class probabilities (softmax output), any float dtype.
        labels: [B, *] class ids in [0, C) or ``ignore_index``, any integer dtype.
        classes: ``"present"`` averages over classes with a valid pixel (in the image when
            ``per_image``, in the batch otherwise), ``"all"`` over every class, or a list of ids.
        per_image: average the per-image losses over the batch (an image without a valid pixel
            contributes 0); otherwise one loss over all pixels of the batch.
        ignore_index: label value whose pixels are left out.

    Returns:
        a 0-d tensor, float32 (float64 for float64 inputs).
    """
    if probas.dim() < 2 or probas.numel() == 0:
        raise ValueError(
            f"lovasz_softmax: expected probabilities [B, C, *], got shape {tuple(probas.shape)}"
        )
    batch, num_classes = probas.shape[:2]
    labels = _flatten_labels(labels, (batch, *probas.shape[2:]), "lovasz_softmax")
    p = probas.reshape(batch, num_classes, -1)
    valid = None if ignore_index is None else labels != ignore_index
    _check_label_values(labels, valid, num_classes, ignore_index, "lovasz_softmax")
    class_ids, present_only = _class_selection(classes, num_classes, p.device)

    # Pixel counts per (image, class); void pixels are relabelled ``num_classes`` and counted in
    # an extra column.
    void = num_classes
    column = labels.long() if valid is None else torch.where(valid, labels.long(), void)
    offsets = torch.arange(batch, device=p.device).unsqueeze(1) * (num_classes + 1)
    counts = torch.zeros(batch * (num_classes + 1), dtype=torch.long, device=p.device)
    counts = counts.index_add_(0, (column + offsets).view(-1), torch.ones_like(column).view(-1))
    counts = counts.view(batch, num_classes + 1)
    if valid is not None and p.device.type == "cpu" and not bool(counts[:, void].any()):
        valid = None  # no void pixel after all: skip the masking passes
    counts = counts[:, :num_classes]
    if not per_image:
        counts = counts.sum(0, keepdim=True)
    has_valid = counts.sum(1, keepdim=True) > 0
    counts = counts[:, class_ids]
    weights = counts > 0 if present_only else has_valid.expand_as(counts)

    # Candidate rows: (image, class) pairs, or classes over the whole batch. On CPU the rows of
    # zero weight are dropped before any per-pixel work; on GPU they are kept and weighted by 0.
    n_groups = weights.shape[0]
    group = torch.arange(n_groups, device=p.device).unsqueeze(1).expand_as(weights).reshape(-1)
    cls = class_ids.unsqueeze(0).expand_as(weights).reshape(-1)
    weights = weights.reshape(-1)
    if p.device.type == "cpu":
        selected = weights.nonzero().squeeze(1)
        group, cls, weights = group[selected], cls[selected], weights[selected]
    if group.numel() == 0:
        return (p.reshape(-1)[:1] * 0.0).sum().to(compute_dtype(p))

    small = torch.uint8 if num_classes < 255 else torch.int32
    image = group if per_image else None
    rows = Rows(image, cls, cls, None if valid is None else void, num_classes + 1)
    losses = _lovasz_rows(p, column.to(small), rows, 0.0)
    return _weighted_mean(losses, weights, group, n_groups).mean()
