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

import torch

__all__ = ["lovasz_hinge", "lovasz_softmax"]

_LOW31 = 0x7FFFFFFF


def jaccard_increments(
    fg_sorted: torch.Tensor,
    gts: torch.Tensor,
    rank: torch.Tensor,
    fg_seen: torch.Tensor,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Differences of the prefix Jaccard losses (the paper's ``lovasz_grad``), in closed form.

    For the ``rank``-th pixel of a row sorted by decreasing error, with ``gts`` foreground pixels
    in the row and ``fg_seen`` of them ranked at or before it, the prefix Jaccard loss is
    ``1 - I/U`` with ``I = gts - fg_seen`` and ``U = gts + rank - fg_seen``. A foreground pixel
    lowers ``I`` by one (increment ``1/U``); a background pixel raises ``U`` by one (increment
    ``I / (U (U-1))``); the first pixel of a row with no foreground has increment 1.
    """
    union = (gts + rank - fg_seen).to(dtype)
    inter = (gts - fg_seen).to(dtype)
    bg_step = (inter + (union == 1)) / (union * (union - 1).clamp_min(1))
    return torch.where(fg_sorted, union.reciprocal(), bg_step)


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 stays float64; every other float dtype (fp16, bf16, fp32) is computed in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def pixel_errors(x: torch.Tensor, fg: torch.Tensor, bg_offset: float) -> torch.Tensor:
    """Hinge errors ``relu(1 - x (2y-1))`` (``bg_offset=1``) or softmax errors ``|y - p|`` (0)."""
    return torch.where(fg, 1.0 - x, x + bg_offset).clamp_min_(0)


def _sort_rows(errors, fg, keep, compact):
    """One radix sort of every kept pixel by (row, decreasing error).

    Returns the sorted rows, foreground flags and errors, the flat input position of each sorted
    pixel, and the number of rows. Pixels that are not kept go to a dummy last row (CUDA) or are
    left out (CPU).
    """
    _, rows, size = errors.shape
    if compact:
        position = keep.view(-1).nonzero().squeeze(1)
        err, is_fg = errors.view(-1)[position], fg.reshape(-1)[position]
        row = torch.div(position, size, rounding_mode="floor").remainder_(rows)
    else:
        err, is_fg = errors.view(-1), fg.expand_as(errors).reshape(-1)
        row_ids = torch.arange(rows, device=errors.device).view(1, rows, 1)
        row = torch.where(keep, row_ids, rows).view(-1)
    if err.dtype == torch.float64:
        # float64 (gradcheck, reference runs): no room for the row in a 64-bit key, so two
        # stable sorts, by decreasing error and then by row.
        order = torch.sort(err, descending=True, stable=True)[1]
        order = order[torch.sort(row[order], stable=True)[1]]
        row, fg_sorted, err = row[order], is_fg[order], err[order]
    else:
        key = (_LOW31 - err.view(torch.int32).long()).bitwise_left_shift_(1).bitwise_or_(is_fg)
        key.bitwise_or_(row.bitwise_left_shift(32))
        key, order = torch.sort(key)
        row = key.bitwise_right_shift(32)
        fg_sorted = key.bitwise_and(1).bool()
        err = (_LOW31 - key.bitwise_right_shift_(1).bitwise_and_(_LOW31)).int().view(torch.float32)
    if compact:
        order = position[order]
    return row, fg_sorted, err, order


class _LovaszExtension(torch.autograd.Function):
    """Per-row Lovász extension of the Jaccard loss over pixel errors of ``x`` [G, R, S].

    Row ``r`` holds the pixels ``x[:, r, :]``. Backward needs only the gradient of each row's loss
    with respect to ``x``, which is known once the forward pass has sorted: it is stored (float32,
    the shape of ``x``; float64 for float64 inputs) instead of the sort's intermediate tensors.
    """

    @staticmethod
    def forward(ctx, x, fg, valid, bg_offset: float, compact: bool):
        groups, rows, size = x.shape
        dtype = compute_dtype(x)
        errors = pixel_errors(x.to(dtype), fg, bg_offset)
        fg_valid = fg if valid is None else fg & valid
        gts = fg_valid.sum((0, 2))
        # Below the smallest foreground error every pixel's Jaccard increment is 0; a row without
        # foreground keeps only its largest error, whose increment is 1.
        inf = torch.tensor(float("inf"), dtype=dtype, device=x.device)
        fg_min = torch.where(fg_valid, errors, inf).amin((0, 2))
        valid_errors = errors if valid is None else torch.where(valid, errors, -inf)
        threshold = torch.where(gts > 0, fg_min, valid_errors.amax((0, 2)))
        keep = (errors > 0) & (errors >= threshold.view(1, rows, 1))
        if valid is not None:
            keep &= valid
        row, fg_sorted, err, order = _sort_rows(errors, fg, keep, compact)
        del errors, keep, valid_errors

        n = row.numel()
        starts = torch.searchsorted(row, torch.arange(rows + 1, device=x.device))
        rank = torch.arange(1, n + 1, device=x.device) - starts[row]
        fg_seen = fg_sorted.cumsum(0)
        fg_before_row = (
            (fg_seen - fg_sorted.long())[starts.clamp(max=max(n - 1, 0))] if n else starts
        )
        fg_seen -= fg_before_row[row]
        gts_rows = torch.cat([gts, gts.new_zeros(1)])[row]
        increments = jaccard_increments(fg_sorted, gts_rows, rank, fg_seen, dtype)
        if not compact:
            increments = increments.masked_fill_(row == rows, 0)
        losses = torch.zeros(rows + 1, dtype=torch.float64, device=x.device)
        losses.index_add_(0, row, err.double() * increments)

        if ctx.needs_input_grad[0]:
            grad = torch.zeros(groups * rows * size, dtype=dtype, device=x.device)
            grad[order] = torch.where(fg_sorted, -increments, increments)
            ctx.save_for_backward(grad.view(groups, rows, size))
        ctx.input_dtype = x.dtype
        return losses[:rows].to(dtype)

    @staticmethod
    def backward(ctx, grad_losses):
        (grad,) = ctx.saved_tensors
        grad_x = (grad * grad_losses.view(1, -1, 1)).to(ctx.input_dtype)
        return grad_x, None, None, None, None


def _lovasz_rows(x, fg, valid, bg_offset):
    """Row losses of ``x`` [G, R, S]; dropped pixels are compacted away on CPU, masked on GPU."""
    return _LovaszExtension.apply(x, fg, valid, bg_offset, x.device.type == "cpu")


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
    x = logits.reshape(batch, -1)
    valid = None if ignore_index is None else labels != ignore_index
    if labels.dtype == torch.bool:
        fg = labels
    else:
        _check_label_values(labels, valid, 2, ignore_index, "lovasz_hinge")
        fg = labels == 1
    if per_image:
        losses = _lovasz_rows(x.unsqueeze(0), fg.unsqueeze(0), _unsqueeze(valid, 0), 1.0)
        return losses.mean()
    return _lovasz_rows(x.unsqueeze(1), fg.unsqueeze(1), _unsqueeze(valid, 1), 1.0)[0]


def _unsqueeze(t, dim):
    return None if t is None else t.unsqueeze(dim)


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
    labels = labels.long()

    # Pixel counts per (image, class); the void pixels go to an extra column.
    column = labels if valid is None else torch.where(valid, labels, num_classes)
    offsets = torch.arange(batch, device=p.device).unsqueeze(1) * (num_classes + 1)
    counts = torch.zeros(batch * (num_classes + 1), dtype=torch.long, device=p.device)
    counts = counts.index_add_(0, (column + offsets).view(-1), torch.ones_like(column).view(-1))
    counts = counts.view(batch, num_classes + 1)[:, :num_classes]
    if not per_image:
        counts = counts.sum(0, keepdim=True)
    has_valid = counts.sum(1, keepdim=True) > 0
    counts = counts[:, class_ids]
    weights = counts > 0 if present_only else has_valid.expand_as(counts)

    # Candidate rows: (image, class) pairs, or classes over the whole batch. On CPU the rows of
    # zero weight are dropped before any per-pixel work; on GPU they are kept and weighted by 0.
    n_groups = weights.shape[0]
    group = torch.arange(n_groups, device=p.device).unsqueeze(1).expand_as(weights)
    cls = class_ids.unsqueeze(0).expand_as(weights)
    if p.device.type == "cpu":
        selected = weights.reshape(-1).nonzero().squeeze(1)
        group, cls = group.reshape(-1)[selected], cls.reshape(-1)[selected]
        weights = weights.reshape(-1)[selected]
    else:
        group, cls, weights = group.reshape(-1), cls.reshape(-1), weights.reshape(-1)
    if group.numel() == 0:
        return (p.reshape(-1)[:1] * 0.0).sum().to(compute_dtype(p))

    if per_image:
        x = p.reshape(batch * num_classes, -1)[group * num_classes + cls].unsqueeze(0)
        fg = (labels[group] == cls.unsqueeze(1)).unsqueeze(0)
        row_valid = None if valid is None else valid[group].unsqueeze(0)
    else:
        x = p.index_select(1, cls)
        fg = labels.unsqueeze(1) == cls.view(1, -1, 1)
        row_valid = _unsqueeze(valid, 1)
    losses = _lovasz_rows(x, fg, row_valid, 0.0)
    return _weighted_mean(losses, weights, group, n_groups).mean()
