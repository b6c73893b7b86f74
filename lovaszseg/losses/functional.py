"""The public Lovász losses: hinge (binary), softmax (multi-class) and multilabel.

Each call checks its inputs, decides which rows (classes, or (image, class) pairs) count and with
what weight, hands every row to one batched kernel call (``lovasz.lovasz_rows``), and averages.
Argument order and defaults of ``lovasz_hinge`` and ``lovasz_softmax`` are the authors'
reference code's; everything after ``*`` is ours.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import distributed
from .lovasz import Rows, compute_dtype, lovasz_rows

__all__ = ["lovasz_hinge", "lovasz_multilabel", "lovasz_softmax"]

_VOID = 2  # the label of void pixels in binary labels and multilabel targets


def _check_choice(name: str, key: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}: {key}={value!r} is not one of {', '.join(map(repr, allowed))}")


def _check_options(name, reduction, sync):
    _check_choice(name, "reduction", reduction, ("mean", "sum", "none"))
    _check_choice(name, "sync", sync, ("none", "global"))
    if sync == "global":
        distributed.require_process_group(name)


def _ignore_alias(name, ignore_index, ignore):
    """``ignore=`` is the authors' name for ``ignore_index`` (their demos pass it by keyword)."""
    if ignore is None:
        return ignore_index
    if ignore_index is not None and ignore_index != ignore:
        raise ValueError(f"{name}: ignore={ignore!r} and ignore_index={ignore_index!r} disagree")
    return ignore


def _flatten_labels(labels, batch_shape, name, device):
    """Labels [B, *] (or [B, 1, *]) → [B, S], checked against the scores' shape and device."""
    if labels.device != device:
        raise ValueError(
            f"{name}: labels are on {labels.device} but the scores on {device}; move both to "
            "the same device"
        )
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


def _label_error(name, what, values, num_classes, ignore_index):
    return ValueError(
        f"{name}: {what} contain {values} outside [0, {num_classes})"
        + (f" that are not ignore_index={ignore_index}" if ignore_index is not None else "")
        + "; pass ignore_index for void pixels"
    )


def _check_label_values(labels, valid, num_classes, ignore_index, name, what="labels"):
    bad = (labels < 0) | (labels >= num_classes)
    if valid is not None:
        bad &= valid
    if bool(bad.any()):
        values = torch.unique(labels[bad])[:8].tolist()
        raise _label_error(name, what, values, num_classes, ignore_index)


def _checked_valid(labels, num_classes, ignore_index, name, what="labels"):
    """Checks that labels lie in ``[0, num_classes)`` or are ``ignore_index`` (``ValueError``
    otherwise) and returns the mask of non-ignored pixels, or None when no pixel can be ignored.

    The common case costs one min/max pass: when every label is in range and ``ignore_index``
    lies outside ``[min, max]``, no mask is formed and nothing else is read.
    """
    if labels.dtype != torch.bool:  # integer: _flatten_labels has checked
        low, high = (int(v) for v in torch.aminmax(labels))
        maybe_ignored = ignore_index is not None and low <= ignore_index <= high
        if low >= 0 and high < num_classes and not maybe_ignored:
            return None
    valid = None if ignore_index is None else labels != ignore_index
    if labels.dtype != torch.bool:
        _check_label_values(labels, valid, num_classes, ignore_index, name, what)
    return valid


def _class_selection(classes, num_classes, device, name):
    """``classes`` → (candidate class ids, whether only present ones count)."""
    if isinstance(classes, str):
        _check_choice(name, "classes", classes, ("present", "all"))
        return torch.arange(num_classes, device=device), classes == "present"
    if isinstance(classes, torch.Tensor):
        classes = classes.tolist()
    if not isinstance(classes, Sequence) or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in classes
    ):
        raise ValueError(f"{name}: classes={classes!r} is not 'present', 'all' or a list of ids")
    if not classes or any(not 0 <= c < num_classes for c in classes):
        raise ValueError(
            f"{name}: classes={list(classes)} must be a non-empty list of ids in [0, {num_classes})"
        )
    return torch.tensor(sorted(set(classes)), device=device), False


def _class_weights(class_weights, num_classes, device, name):
    if class_weights is None:
        return None
    weights = torch.as_tensor(class_weights, dtype=torch.float64, device=device)
    if weights.shape != (num_classes,):
        raise ValueError(
            f"{name}: class_weights has shape {tuple(weights.shape)}, expected ({num_classes},): "
            "one weight per class"
        )
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError(f"{name}: class_weights must be finite and >= 0, got {weights.tolist()}")
    return weights


def _group_means(losses, weights, group, n_groups):
    """Weighted mean of the row losses within each group (image), and each group's weight."""
    weights = weights.to(losses.dtype)
    num = losses.new_zeros(n_groups).index_add_(0, group, losses * weights)
    den = losses.new_zeros(n_groups).index_add_(0, group, weights)
    return num / den.clamp_min(torch.finfo(losses.dtype).tiny), den


def _reduce(values, reduction, counted=None):
    """Per-image (or one batch-level) values → the requested reduction.

    ``mean`` averages over ``counted`` groups when given (the others are skipped), else over all.
    """
    if reduction == "none":
        return values if values.numel() > 1 else values[0]
    total = values.sum()
    if reduction == "sum":
        return total
    if counted is None:
        return total / values.numel()
    return total / counted.sum().clamp_min(1).to(total.dtype)


def _rows_of(weights, class_ids, device):
    """Candidate rows of a [G, K] weight table: group and class of every row of nonzero weight.

    On CPU the rows of zero weight are dropped before any per-pixel work; on GPU they are kept
    and weighted by 0, so that nothing waits for the host.
    """
    n_groups = weights.shape[0]
    group = torch.arange(n_groups, device=device).unsqueeze(1).expand_as(weights).reshape(-1)
    cls = class_ids.unsqueeze(0).expand_as(weights).reshape(-1)
    weights = weights.reshape(-1)
    if device.type == "cpu":
        selected = weights.nonzero().squeeze(1)
        group, cls, weights = group[selected], cls[selected], weights[selected]
    return group, cls, weights


def _zero(x):
    """A 0-d zero that keeps the graph (zero gradient), for calls with nothing to count."""
    return (x.reshape(-1)[:1] * 0.0).sum().to(compute_dtype(x))


def _class_rows_loss(
    x,
    y,
    weights,
    weights_c,
    class_ids,
    per_image,
    make_rows,
    sync,
    reduction,
    softmax=False,
    probabilities_of=None,
):
    """Rows of nonzero weight → one kernel call → weighted mean per image → the reduction.

    ``weights`` [G, K] says which (image or batch, class) rows count; ``weights_c`` scales them.
    ``softmax``: ``x`` are logits, turned into probabilities inside the kernel.
    ``probabilities_of``: the loss's name, when ``x`` must be probabilities (checked).
    """
    batch = x.shape[0]
    weights = weights.double() if weights_c is None else weights * weights_c[class_ids]
    group, cls, weights = _rows_of(weights, class_ids, x.device)
    if group.numel() == 0:
        zero = _zero(x)
        return zero.expand(batch) if reduction == "none" and per_image else zero
    rows = make_rows(group if per_image else None, cls)
    losses = lovasz_rows(x, y, rows, sync=sync, softmax=softmax, probabilities_of=probabilities_of)
    values, _ = _group_means(losses, weights, group, batch if per_image else 1)
    return _reduce(values, reduction)


def lovasz_hinge(
    logits: torch.Tensor,
    labels: torch.Tensor,
    per_image: bool = True,
    ignore_index: int | None = None,
    *,
    activation: str = "relu",
    symmetric: bool = False,
    empty: str = "include",
    reduction: str = "mean",
    sync: str = "none",
    ignore: int | None = None,
) -> torch.Tensor:
    """Binary Lovász hinge loss on raw logits (the authors' ``lovasz_hinge``, and variants).

    Args:
        logits: [B, *] or [B, 1, *] raw scores of the foreground class, any float dtype.
        labels: [B, *] binary labels (0/1, bool, or ``ignore_index``), any integer dtype.
        per_image: average the per-image losses over the batch; otherwise one loss over all
            pixels of the batch.
        ignore_index: label value whose pixels are left out.
        activation: ``"relu"`` (the paper's hinge) or ``"elu+1"``, the smooth, everywhere
            positive variant popular since the Kaggle TGS salt competition.
        symmetric: average the loss on ``(x, y)`` with the loss on ``(-x, 1 - y)``, which also
            optimises the background's IoU.
        empty: ``"include"`` counts images without foreground (the reference: such an image
            pushes down only its single worst pixel), ``"skip"`` leaves them out of the average.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-image values when ``per_image``).
        sync: ``"global"`` computes the batch-level loss over the pixels of every DDP process.
        ignore: the reference code's name for ``ignore_index``.

    Returns:
        a float32 tensor (float64 for float64 inputs): 0-d, or [B] with ``reduction="none"``.
    """
    name = "lovasz_hinge"
    ignore_index = _ignore_alias(name, ignore_index, ignore)
    _check_options(name, reduction, sync)
    _check_choice(name, "activation", activation, ("relu", "elu+1"))
    _check_choice(name, "empty", empty, ("include", "skip"))
    if logits.dim() < 1 or logits.numel() == 0:
        raise ValueError(f"{name}: expected logits [B, *], got shape {tuple(logits.shape)}")
    if logits.dim() >= 2 and logits.shape[1] == 1 and labels.dim() == logits.dim() - 1:
        logits = logits.squeeze(1)
    labels = _flatten_labels(labels, logits.shape, name, logits.device)
    batch, device = logits.shape[0], logits.device
    x = logits.reshape(batch, 1, -1)
    valid = _checked_valid(labels, 2, ignore_index, name)
    column, void = labels.to(torch.uint8), None
    if valid is not None and (device.type != "cpu" or not bool(valid.all())):
        void, column = _VOID, torch.where(valid, column, _VOID)

    # One row per image (or one for the batch) whose foreground is label 1; the symmetric
    # variant adds the same rows with the logits negated and label 0 as foreground.
    groups = batch if per_image else 1
    image = torch.arange(groups, device=device)
    targets = [1, 0] if symmetric else [1]
    target = torch.tensor(targets, device=device).repeat_interleave(groups)
    sign = (1 - 2 * (1 - target)) if symmetric else None
    image = image.repeat(len(targets))
    rows = Rows(
        image=image if per_image else None,
        channel=torch.zeros_like(target),
        target=target,
        void=void,
        num_labels=3,
        sign=sign,
        offset=1.0,
        activation=activation,
    )
    global_sync = sync == "global" and not per_image
    losses = lovasz_rows(x, column.unsqueeze(1), rows, sync=global_sync)

    if empty == "skip":  # a row counts when its foreground is not empty
        present = torch.stack([(column == t).view(groups, -1).any(1) for t in targets]).view(-1)
        if global_sync:
            present = distributed.all_reduce_sum(present.long()) > 0
        weights = present
    else:
        weights = torch.ones_like(losses)
    values, counted = _group_means(losses, weights, image, groups)
    return _reduce(values, reduction, counted > 0 if empty == "skip" else None)


def lovasz_softmax(
    probas: torch.Tensor,
    labels: torch.Tensor,
    classes: str | Sequence[int] = "present",
    per_image: bool = False,
    ignore_index: int | None = None,
    *,
    class_weights: Sequence[float] | torch.Tensor | None = None,
    reduction: str = "mean",
    sync: str = "none",
    ignore: int | None = None,
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
        class_weights: [C] weights: the class average becomes a weighted mean, normalised by the
            weights of the classes actually counted.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-image values when ``per_image``).
        sync: ``"global"`` computes the batch-level loss over the pixels of every DDP process.
        ignore: the reference code's name for ``ignore_index``.

    Returns:
        a float32 tensor (float64 for float64 inputs): 0-d, or [B] with ``reduction="none"``.

    Raises ``ValueError`` for probabilities outside [0, 1] (logits given by mistake: use
    ``LovaszSoftmaxLoss``, which applies the softmax), a single channel (use the hinge), labels
    on another device.
    """
    ignore_index = _ignore_alias("lovasz_softmax", ignore_index, ignore)
    return _softmax_loss(
        probas, labels, classes, per_image, ignore_index, class_weights, reduction, sync, False
    )


def _label_counts(labels, num_classes, ignore_index, name):
    """Checked labels [B, S] → pixel counts per (image, class) [B, C], the labels as the kernel
    reads them (uint8 where they fit), their void label (None when no pixel is void) and the
    number of label values.

    Usually one min/max pass and one ``bincount`` of (image, label) pairs do it all: the counts,
    the check (a count outside the classes that is not ``ignore_index``'s is an error) and
    whether any pixel is void, which then keeps its label. Negative labels, labels of 2^15 and
    more, or an ``ignore_index`` that is a class id take the masked path.
    """
    batch, device = labels.shape[0], labels.device
    if labels.dtype == torch.bool:
        labels = labels.to(torch.uint8)
    low, high = (int(v) for v in torch.aminmax(labels))
    ignore_is_class = ignore_index is not None and 0 <= ignore_index < num_classes
    if low >= 0 and high < 2**15 and not ignore_is_class:
        width = max(high + 1, num_classes)
        offsets = torch.arange(batch, device=device).unsqueeze(1) * width
        counts = torch.bincount((labels + offsets).view(-1), minlength=batch * width)
        counts = counts.view(batch, width)
        extra = counts[:, num_classes:].sum(0)
        if ignore_index is not None and num_classes <= ignore_index < width:
            void_pixels = int(extra[ignore_index - num_classes])
            extra[ignore_index - num_classes] = 0
        else:
            void_pixels = 0
        if bool(extra.any()):
            bad = (extra.nonzero().squeeze(1)[:8] + num_classes).tolist()
            raise _label_error(name, "labels", bad, num_classes, ignore_index)
        small = torch.uint8 if width <= 256 else torch.int32
        void = ignore_index if void_pixels else None
        return counts[:, :num_classes], labels.to(small), void, width
    valid = _checked_valid(labels, num_classes, ignore_index, name)
    # Void pixels are relabelled ``num_classes`` and counted in an extra column.
    void = num_classes
    column = labels.long() if valid is None else torch.where(valid, labels.long(), void)
    offsets = torch.arange(batch, device=device).unsqueeze(1) * (num_classes + 1)
    counts = torch.bincount((column + offsets).view(-1), minlength=batch * (num_classes + 1))
    counts = counts.view(batch, num_classes + 1)
    if valid is not None and device.type == "cpu" and not bool(counts[:, void].any()):
        valid = None  # no void pixel after all: skip the masking passes
    small = torch.uint8 if num_classes < 255 else torch.int32
    return counts[:, :num_classes], column.to(small), None if valid is None else void, void + 1


def _softmax_loss(
    scores, labels, classes, per_image, ignore_index, class_weights, reduction, sync, from_logits
):
    """``lovasz_softmax`` on probabilities, or on logits (``from_logits``) with the softmax
    done inside the kernel, whose backward is then far cheaper than autograd's softmax's."""
    name = "lovasz_softmax"
    _check_options(name, reduction, sync)
    if scores.dim() < 2 or scores.numel() == 0:
        what = "logits" if from_logits else "probabilities"
        raise ValueError(f"{name}: expected {what} [B, C, *], got shape {tuple(scores.shape)}")
    batch, num_classes = scores.shape[:2]
    device = scores.device
    if num_classes == 1:
        raise ValueError(
            f"{name}: scores of shape {tuple(scores.shape)} have a single channel; for binary "
            "segmentation with one logit per pixel use lovasz_hinge (or LovaszHingeLoss)"
        )
    labels = _flatten_labels(labels, (batch, *scores.shape[2:]), name, device)
    p = scores.reshape(batch, num_classes, -1)
    counts, column, void, num_labels = _label_counts(labels, num_classes, ignore_index, name)
    class_ids, present_only = _class_selection(classes, num_classes, device, name)
    weights_c = _class_weights(class_weights, num_classes, device, name)
    global_sync = sync == "global" and not per_image
    if not per_image:
        counts = counts.sum(0, keepdim=True)
        if global_sync:
            counts = distributed.all_reduce_sum(counts)
    has_valid = counts.sum(1, keepdim=True) > 0
    counts = counts[:, class_ids]
    weights = counts > 0 if present_only else has_valid.expand_as(counts)

    def rows(image, cls):
        return Rows(image=image, channel=cls, target=cls, void=void, num_labels=num_labels)

    return _class_rows_loss(
        p,
        column,
        weights,
        weights_c,
        class_ids,
        per_image,
        rows,
        global_sync,
        reduction,
        softmax=from_logits,
        probabilities_of=None if from_logits else name,
    )


def lovasz_multilabel(
    scores: torch.Tensor,
    targets: torch.Tensor,
    kind: str = "sigmoid",
    classes: str | Sequence[int] = "present",
    per_image: bool = False,
    ignore_index: int | None = None,
    *,
    class_weights: Sequence[float] | torch.Tensor | None = None,
    reduction: str = "mean",
    sync: str = "none",
) -> torch.Tensor:
    """Multilabel Lovász loss: one Lovász loss per channel, averaged over the counted channels.

    Args:
        scores: [B, C, *]: probabilities (``kind="sigmoid"``, the Lovász-sigmoid errors
            ``|y - p|``) or raw logits (``kind="hinge"``, the Lovász hinge per channel).
        targets: [B, C, *] 0/1 targets (any dtype), or ``ignore_index``.
        classes: ``"present"`` averages over channels with at least one positive (in the image
            when ``per_image``, in the batch otherwise), ``"all"`` over every channel with a valid
            pixel, or a list of channel ids.
        per_image, ignore_index, class_weights, reduction, sync: as for ``lovasz_softmax``.

    Returns:
        a float32 tensor (float64 for float64 inputs): 0-d, or [B] with ``reduction="none"``.
    """
    name = "lovasz_multilabel"
    _check_options(name, reduction, sync)
    _check_choice(name, "kind", kind, ("sigmoid", "hinge"))
    if scores.dim() < 2 or scores.numel() == 0:
        raise ValueError(f"{name}: expected scores [B, C, *], got shape {tuple(scores.shape)}")
    if targets.device != scores.device:
        raise ValueError(
            f"{name}: targets are on {targets.device} but the scores on {scores.device}; move "
            "both to the same device"
        )
    if targets.shape != scores.shape:
        raise ValueError(
            f"{name}: targets of shape {tuple(targets.shape)} do not match scores of shape "
            f"{tuple(scores.shape)}: one 0/1 target per score"
        )
    batch, num_classes = scores.shape[:2]
    device = scores.device
    x = scores.reshape(batch, num_classes, -1)
    y = targets.reshape(batch, num_classes, -1)
    integer = not (y.is_floating_point() or y.is_complex() or y.dtype == torch.bool)
    if integer and _checked_valid(y, 2, ignore_index, name, "targets") is None:
        valid = None  # 0/1 only (one min/max pass)
    else:
        valid = None if ignore_index is None else y != ignore_index
        bad = (y != 0) & (y != 1)
        if valid is not None:
            bad &= valid
        if bool(bad.any()):
            values = torch.unique(y[bad])[:8].tolist()
            raise ValueError(
                f"{name}: targets contain {values}; expected 0 or 1"
                + (f" or ignore_index={ignore_index}" if ignore_index is not None else "")
            )
    class_ids, present_only = _class_selection(classes, num_classes, device, name)
    weights_c = _class_weights(class_weights, num_classes, device, name)

    y = y.to(torch.uint8) if integer and valid is None else (y == 1).to(torch.uint8)
    if valid is not None:
        y.masked_fill_(~valid, _VOID)
    positives = (y == 1).sum(-1)
    valid_any = (y != _VOID).any(-1) if valid is not None else torch.ones_like(positives).bool()
    global_sync = sync == "global" and not per_image
    if not per_image:
        positives, valid_any = positives.sum(0, keepdim=True), valid_any.any(0, keepdim=True)
        if global_sync:
            positives = distributed.all_reduce_sum(positives)
            valid_any = distributed.all_reduce_sum(valid_any.long()) > 0
    weights = (positives > 0 if present_only else valid_any)[:, class_ids]
    has_void = valid is not None and (device.type != "cpu" or not bool(valid.all()))
    offset = 1.0 if kind == "hinge" else 0.0

    def rows(image, cls):
        return Rows(
            image=image, channel=cls, target=None, void=_VOID if has_void else None, offset=offset
        )

    return _class_rows_loss(
        x, y, weights, weights_c, class_ids, per_image, rows, global_sync, reduction
    )
