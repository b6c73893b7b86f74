"""The public Lovász losses: hinge (binary), softmax (multi-class) and multilabel.

Each call checks its inputs, describes its rows (classes, or (image, class) pairs), hands every
row to one call of the engine or of the C kernel (``ops.uses_kernel`` chooses) and averages the
rows' losses with their weights. Two ways to the same values: on the engine (every device),
every candidate row is kept and the present ones are told from the rows' foreground counts, so
that nothing is read back; on the C kernel (CPU), the labels are counted first and absent rows
are dropped before any pixel is read.
Argument order and defaults of ``lovasz_hinge`` and ``lovasz_softmax`` are the authors'
reference code's; everything after ``*`` is ours.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import checks as checking
from . import distributed, engine, ops
from .lovasz import Rows, compute_dtype, hinge_errors, multilabel_errors, softmax_errors

__all__ = ["lovasz_hinge", "lovasz_multilabel", "lovasz_softmax"]

_VOID = 2  # the C kernel's label of void pixels in binary labels and multilabel targets


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


def _plainly_in_range(labels, num_classes, ignore_index):
    """Whether integer labels all lie in ``[0, num_classes)`` and none can be ``ignore_index``:
    one min/max pass."""
    low, high = (int(v) for v in torch.aminmax(labels))
    maybe_ignored = ignore_index is not None and low <= ignore_index <= high
    return low >= 0 and high < num_classes and not maybe_ignored


def _checked_valid(labels, num_classes, ignore_index, name):
    """For the C kernel (CPU): checks that labels lie in ``[0, num_classes)`` or are
    ``ignore_index`` (``ValueError`` otherwise) and returns the mask of non-ignored pixels, or
    None when no pixel can be ignored. The common case is one min/max pass."""
    # Integer or bool: _flatten_labels has checked.
    if labels.dtype != torch.bool and _plainly_in_range(labels, num_classes, ignore_index):
        return None
    valid = None if ignore_index is None else labels != ignore_index
    checking.report(name, "sync", [checking.labels_in_range(labels, num_classes, ignore_index)])
    return valid


def _weighted_means(losses, weights):
    """Weighted means [G] of the row losses [G, K] (weights [G, K]), and the weight each mean
    had (a group of weight 0 has mean 0)."""
    weights = weights.to(losses.dtype)
    total = weights.sum(1)
    return (losses * weights).sum(1) / total.clamp_min(torch.finfo(losses.dtype).tiny), total


def _reduce(losses, reduction, weights=None, skip_empty=False):
    """Row losses [G, K] (groups: images, or the batch) → the requested reduction of the
    groups' (weighted) means over their rows.

    ``mean`` with ``skip_empty`` averages over the groups of nonzero weight only.
    """
    if weights is None and reduction == "mean":  # a mean of means over equal numbers of rows
        return losses.mean()
    if weights is None:
        values, total = losses.mean(1), None
    else:
        values, total = _weighted_means(losses, weights)
    if reduction == "none":
        return values if values.numel() > 1 else values[0]
    if reduction == "sum":
        return values.sum()
    if not skip_empty:
        return values.mean()
    return values.sum() / (total > 0).sum().clamp_min(1).to(values.dtype)


def _kernel_rows(weights, class_ids):
    """For the C kernel: the rows of nonzero weight of a [G, K] table, as (flat index in the
    table, group, class), so that absent rows are dropped before any pixel is read."""
    n_classes = weights.shape[1]
    selected = weights.reshape(-1).nonzero().squeeze(1)
    return selected, selected // n_classes, class_ids.index_select(0, selected % n_classes)


def _class_rows_by_kernel(
    x, y, weights, class_ids, per_image, make_rows, softmax=False, check_range=False
):
    """C kernel: the row losses [G, K] of the rows of nonzero ``weights`` [G, K] (0 elsewhere),
    and with ``check_range`` the range of ``x`` it read (else, or without rows, None)."""
    selected, group, cls = _kernel_rows(weights, class_ids)
    losses = x.new_zeros(weights.numel(), dtype=compute_dtype(x))
    if selected.numel() == 0:  # nothing counts: a zero that keeps the graph
        return losses.view_as(weights) + x.reshape(-1)[:1].to(losses.dtype) * 0.0, None
    rows = make_rows(group if per_image else None, cls)
    found, x_range = ops.kernel_rows(x, y, rows, softmax=softmax, check_range=check_range)
    return losses.index_copy(0, selected, found).view_as(weights), x_range


def _engine_rows(errors, foreground, groups, sync, dtype, checks):
    """Engine: the row losses [G, K] in ``dtype`` and foreground counts [G, K] of rows [G·K, L].
    Shapes stay fixed unless ``checks`` is ``"sync"``: a call that reads the host anyway may
    compact its rows on CPU (``engine.row_losses``)."""
    losses, gts = engine.row_losses(errors, foreground, sync, fixed_shape=checks != "sync")
    return losses.to(dtype).view(groups, -1), gts.view(groups, -1)


def _any_valid(valid, per_image, sync):
    """Whether each group (image, or the batch) has a valid pixel: ``valid`` [B, S] → [G, 1],
    or per channel, [B, C, S] → [G, C]; across processes with ``sync``."""
    found = valid.any(-1) if valid.dim() == 3 else valid.any(-1, keepdim=True)
    if not per_image:
        found = found.any(0, keepdim=True)
    if sync:
        found = distributed.all_reduce_sum(found.long()) > 0
    return found


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
    checks: str | None = None,
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
        checks: how the labels are checked: ``"sync"`` (one host read, ``ValueError``; the
            default on CPU), ``"async"`` (a device-side assert, no host read: the default on
            other devices, and what ``torch.compile(fullgraph=True)`` needs) or ``"off"``.
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
    checks = checking.choose(name, checks, logits.device)
    batch = logits.shape[0]
    x = logits.reshape(batch, 1, -1)
    global_sync = sync == "global" and not per_image

    # One row per image (or one for the batch) whose foreground is label 1; the symmetric
    # variant adds the same rows with the logits negated and label 0 as foreground.
    groups, halves = (batch if per_image else 1), (2 if symmetric else 1)
    if ops.uses_kernel(x, activation, global_sync, fixed_shape=checks != "sync"):
        valid = _checked_valid(labels, 2, ignore_index, name)
        column, void = labels.to(torch.uint8), None
        if valid is not None and not bool(valid.all()):
            void, column = _VOID, torch.where(valid, column, _VOID)
        target = torch.tensor([1, 0][:halves]).repeat_interleave(groups)
        rows = Rows(
            image=torch.arange(groups).repeat(halves) if per_image else None,
            channel=torch.zeros_like(target),
            target=target,
            void=void,
            num_labels=3,
            sign=2 * target - 1 if symmetric else None,
            offset=1.0,
        )
        losses = ops.kernel_rows(x, column.unsqueeze(1), rows)[0].view(halves, groups).t()
        has_foreground = None  # a pass over the labels, made only for the option that reads it
        if empty == "skip":
            found = [(column == t).reshape(groups, -1).any(1) for t in (1, 0)[:halves]]
            has_foreground = torch.stack(found).t()
    else:
        checking.report(name, checks, [checking.labels_in_range(labels, 2, ignore_index)])
        errors, foreground = hinge_errors(
            x.to(compute_dtype(x)), labels, per_image, ignore_index, symmetric, activation
        )
        losses, gts = _engine_rows(
            errors, foreground, groups, global_sync, compute_dtype(x), checks
        )
        has_foreground = gts > 0 if empty == "skip" else None

    # With empty="skip" a row counts when it has foreground.
    return _reduce(losses, reduction, has_foreground, skip_empty=empty == "skip")


def lovasz_softmax(
    probas: torch.Tensor,
    labels: torch.Tensor,
    classes: str | Sequence[int] | torch.Tensor = "present",
    per_image: bool = False,
    ignore_index: int | None = None,
    *,
    class_weights: Sequence[float] | torch.Tensor | None = None,
    reduction: str = "mean",
    sync: str = "none",
    checks: str | None = None,
    from_logits: bool = False,
    ignore: int | None = None,
) -> torch.Tensor:
    """Multi-class Lovász-softmax loss on probabilities (the authors' ``lovasz_softmax``).

    Args:
        probas: [B, C, *] class probabilities (softmax output), any float dtype; logits with
            ``from_logits``.
        labels: [B, *] class ids in [0, C) or ``ignore_index``, any integer dtype.
        classes: ``"present"`` averages over classes with a valid pixel (in the image when
            ``per_image``, in the batch otherwise), ``"all"`` over every class, or a list (or
            1-d tensor) of ids.
        per_image: average the per-image losses over the batch (an image without a valid pixel
            contributes 0); otherwise one loss over all pixels of the batch.
        ignore_index: label value whose pixels are left out.
        class_weights: [C] weights: the class average becomes a weighted mean, normalised by the
            weights of the classes actually counted.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-image values when ``per_image``).
        sync: ``"global"`` computes the batch-level loss over the pixels of every DDP process.
        checks: ``"sync"``, ``"async"`` or ``"off"``, as for ``lovasz_hinge``; they cover the
            labels, the probabilities' range, a tensor of ``classes`` and ``class_weights``.
        from_logits: ``probas`` are logits: their softmax over C is taken inside, the caller
            keeps no copy of it (on the C kernel, its backward is written over it).
        ignore: the reference code's name for ``ignore_index``.

    Returns:
        a float32 tensor (float64 for float64 inputs): 0-d, or [B] with ``reduction="none"``.

    Raises ``ValueError`` for probabilities outside [0, 1] (logits given by mistake: pass
    ``from_logits=True`` or use ``LovaszSoftmaxLoss``), a single channel (use the hinge), labels
    on another device.
    """
    name = "lovasz_softmax"
    ignore_index = _ignore_alias(name, ignore_index, ignore)
    _check_options(name, reduction, sync)
    if probas.dim() < 2 or probas.numel() == 0:
        what = "logits" if from_logits else "probabilities"
        raise ValueError(f"{name}: expected {what} [B, C, *], got shape {tuple(probas.shape)}")
    batch, num_classes = probas.shape[:2]
    device = probas.device
    if num_classes == 1:
        raise ValueError(
            f"{name}: scores of shape {tuple(probas.shape)} have a single channel; for binary "
            "segmentation with one logit per pixel use lovasz_hinge (or LovaszHingeLoss)"
        )
    labels = _flatten_labels(labels, (batch, *probas.shape[2:]), name, device)
    checks = checking.choose(name, checks, device)
    p = probas.reshape(batch, num_classes, -1)
    class_ids, present_only, ids_check = checking.class_ids(classes, num_classes, device, name)
    weights_c, weights_check = checking.class_weights(class_weights, num_classes, device, name)
    global_sync = sync == "global" and not per_image
    groups = batch if per_image else 1

    if ops.uses_kernel(p, sync=global_sync, fixed_shape=checks != "sync"):
        checking.report(name, "sync", [ids_check, weights_check])
        if class_ids is None:
            class_ids = torch.arange(num_classes)
        counts, column, void, num_labels = _label_counts(labels, num_classes, ignore_index, name)
        if not per_image:
            counts = counts.sum(0, keepdim=True)
        has_valid = counts.sum(1, keepdim=True) > 0
        counts = counts[:, class_ids]
        weights = counts > 0 if present_only else has_valid.expand_as(counts)
        if weights_c is not None:
            weights = weights * weights_c[class_ids]

        def rows(image, cls):
            return Rows(image=image, channel=cls, target=cls, void=void, num_labels=num_labels)

        losses, x_range = _class_rows_by_kernel(
            p,
            column.unsqueeze(1),
            weights,
            class_ids,
            per_image,
            rows,
            softmax=from_logits,
            check_range=not from_logits,
        )
        if x_range is not None:
            checking.report(name, "sync", [checking.probabilities(*x_range)])
    else:
        # In the kernel path's order, so that both name the same problem first.
        found = [
            ids_check,
            weights_check,
            checking.labels_in_range(labels, num_classes, ignore_index),
        ]
        found += [None if from_logits else checking.probabilities(*p.aminmax())]
        checking.report(name, checks, found)

        dtype = compute_dtype(p)
        scores = torch.softmax(p.to(dtype), dim=1) if from_logits else p.to(dtype)
        errors, foreground = softmax_errors(scores, labels, class_ids, per_image, ignore_index)
        losses, gts = _engine_rows(errors, foreground, groups, global_sync, dtype, checks)
        if present_only:
            weights = gts > 0
        elif ignore_index is not None:
            weights = _any_valid(labels != ignore_index, per_image, global_sync).expand_as(gts)
        else:
            weights = None
        weights = _with_class_weights(weights, weights_c, class_ids, gts)
    return _reduce(losses, reduction, weights)


def _with_class_weights(weights, class_weights, class_ids, gts):
    """The rows' weights times each row's class weight (those of ``class_ids`` when given)."""
    if class_weights is None:
        return weights
    class_weights = class_weights if class_ids is None else class_weights[class_ids]
    return class_weights.expand_as(gts) if weights is None else weights * class_weights


def lovasz_multilabel(
    scores: torch.Tensor,
    targets: torch.Tensor,
    kind: str = "sigmoid",
    classes: str | Sequence[int] | torch.Tensor = "present",
    per_image: bool = False,
    ignore_index: int | None = None,
    *,
    class_weights: Sequence[float] | torch.Tensor | None = None,
    reduction: str = "mean",
    sync: str = "none",
    checks: str | None = None,
) -> torch.Tensor:
    """Multilabel Lovász loss: one Lovász loss per channel, averaged over the counted channels.

    Args:
        scores: [B, C, *]: probabilities (``kind="sigmoid"``, the Lovász-sigmoid errors
            ``|y - p|``) or raw logits (``kind="hinge"``, the Lovász hinge per channel).
        targets: [B, C, *] 0/1 targets (any dtype), or ``ignore_index``.
        classes: ``"present"`` averages over channels with at least one positive (in the image
            when ``per_image``, in the batch otherwise), ``"all"`` over every channel with a valid
            pixel, or a list (or 1-d tensor) of channel ids.
        per_image: average the per-image losses over the batch; otherwise one loss per channel
            over all pixels of the batch.
        ignore_index: target value whose pixels are left out.
        class_weights: [C] weights: the channel average becomes a weighted mean, normalised by
            the weights of the channels actually counted.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-image values when ``per_image``).
        sync: ``"global"`` computes the batch-level loss over the pixels of every DDP process.
        checks: ``"sync"``, ``"async"`` or ``"off"``, as for ``lovasz_hinge``; they cover the
            targets, a tensor of ``classes`` and ``class_weights``.

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
    checks = checking.choose(name, checks, scores.device)
    batch, num_classes = scores.shape[:2]
    device = scores.device
    x = scores.reshape(batch, num_classes, -1)
    y = targets.reshape(batch, num_classes, -1)
    class_ids, present_only, ids_check = checking.class_ids(classes, num_classes, device, name)
    weights_c, weights_check = checking.class_weights(class_weights, num_classes, device, name)
    global_sync = sync == "global" and not per_image
    groups = batch if per_image else 1
    offset = 1.0 if kind == "hinge" else 0.0

    if ops.uses_kernel(x, sync=global_sync, fixed_shape=checks != "sync"):
        checking.report(name, "sync", [ids_check, weights_check])
        if class_ids is None:
            class_ids = torch.arange(num_classes)
        y, void = _kernel_targets(y, ignore_index, name)
        positives = (y == 1).sum(-1)
        valid_any = (y != _VOID).any(-1) if void is not None else torch.ones_like(positives).bool()
        if not per_image:
            positives, valid_any = positives.sum(0, keepdim=True), valid_any.any(0, keepdim=True)
        weights = (positives > 0 if present_only else valid_any)[:, class_ids]
        if weights_c is not None:
            weights = weights * weights_c[class_ids]

        def rows(image, cls):
            return Rows(image=image, channel=cls, target=None, void=void, offset=offset)

        losses, _ = _class_rows_by_kernel(x, y, weights, class_ids, per_image, rows)
    else:
        # In the kernel path's order, so that both name the same problem first.
        found = [ids_check, weights_check, checking.binary_targets(y, ignore_index)]
        checking.report(name, checks, found)

        errors, foreground = multilabel_errors(
            x.to(compute_dtype(x)), y, class_ids, per_image, ignore_index, hinge=kind == "hinge"
        )
        losses, gts = _engine_rows(
            errors, foreground, groups, global_sync, compute_dtype(x), checks
        )
        if present_only:
            weights = gts > 0
        elif ignore_index is not None:
            weights = _any_valid(y != ignore_index, per_image, global_sync)
            weights = weights if class_ids is None else weights[:, class_ids]
        else:
            weights = None
        weights = _with_class_weights(weights, weights_c, class_ids, gts)
    return _reduce(losses, reduction, weights)


def _kernel_targets(y, ignore_index, name):
    """For the C kernel (CPU): checked 0/1 targets → uint8 targets with void pixels set to
    ``_VOID``, and the void label (None when no pixel is void)."""
    integer = not (y.is_floating_point() or y.is_complex() or y.dtype == torch.bool)
    if integer and _plainly_in_range(y, 2, ignore_index):
        return y.to(torch.uint8), None  # 0/1 only (one min/max pass)
    valid = None if ignore_index is None else y != ignore_index
    checking.report(name, "sync", [checking.binary_targets(y, ignore_index)])
    y = (y == 1).to(torch.uint8)
    if valid is None or bool(valid.all()):
        return y, None
    return y.masked_fill_(~valid, _VOID), _VOID


def _label_counts(labels, num_classes, ignore_index, name):
    """For the C kernel (CPU): checked labels [B, S] → pixel counts per (image, class) [B, C], the labels as the kernel
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
        counts = torch.bincount((labels + offsets).reshape(-1), minlength=batch * width)
        counts = counts.view(batch, width)
        extra = counts[:, num_classes:].sum(0)
        if ignore_index is not None and num_classes <= ignore_index < width:
            void_pixels = int(extra[ignore_index - num_classes])
            extra[ignore_index - num_classes] = 0
        else:
            void_pixels = 0
        if bool(extra.any()):
            bad = (extra.nonzero().squeeze(1)[:8] + num_classes).tolist()
            raise ValueError(
                f"{name}: " + checking.label_error("labels", bad, num_classes, ignore_index)
            )
        small = torch.uint8 if width <= 256 else torch.int32
        void = ignore_index if void_pixels else None
        return counts[:, :num_classes], labels.to(small), void, width
    valid = _checked_valid(labels, num_classes, ignore_index, name)
    # Void pixels are relabelled ``num_classes`` and counted in an extra column.
    void = num_classes
    column = labels.long() if valid is None else torch.where(valid, labels.long(), void)
    offsets = torch.arange(batch, device=device).unsqueeze(1) * (num_classes + 1)
    counts = torch.bincount((column + offsets).reshape(-1), minlength=batch * (num_classes + 1))
    counts = counts.view(batch, num_classes + 1)
    if valid is not None and device.type == "cpu" and not bool(counts[:, void].any()):
        valid = None  # no void pixel after all: skip the masking passes
    small = torch.uint8 if num_classes < 255 else torch.int32
    return counts[:, :num_classes], column.to(small), None if valid is None else void, void + 1
