"""The Lovász losses written from the paper's definitions, with explicit sets: slow, obvious, float64.

The Lovász extension of a set function ``f`` with ``f(∅) = 0`` at a vector ``m >= 0`` is the integral
of ``f`` over the level sets: ``sum_k (t_k - t_{k+1}) f({i : m_i >= t_k})`` over the distinct
values ``t_1 > t_2 > ... > t_K`` of ``m`` and ``t_{K+1} = 0``. The Jaccard loss of a set ``M`` of
mispredicted pixels is ``|M| / |F ∪ M|`` for the foreground set ``F``.
"""

import torch


def jaccard_loss(mispredicted: set, foreground: set) -> float:
    if not mispredicted:
        return 0.0
    return len(mispredicted) / len(foreground | mispredicted)


def lovasz_extension(errors: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
    """Differentiable in ``errors`` (1-d, >= 0): each level's width is a difference of errors."""
    values = errors.tolist()
    fg = {i for i, f in enumerate(foreground.tolist()) if f}
    levels = sorted(set(values), reverse=True)
    holder = {v: values.index(v) for v in levels}  # one pixel holding each level
    total = errors.new_zeros(())
    for k, level in enumerate(levels):
        lower = errors[holder[levels[k + 1]]] if k + 1 < len(levels) else 0.0
        at_or_above = {i for i, e in enumerate(values) if e >= level}
        total = total + (errors[holder[level]] - lower) * jaccard_loss(at_or_above, fg)
    return total


def hinge(logits, labels, per_image=True, ignore_index=None):
    """logits [B, *], labels [B, *] in {0, 1, ignore_index}."""
    logits, labels = logits.reshape(len(logits), -1), labels.reshape(len(labels), -1)
    groups = (
        [(logits[b], labels[b]) for b in range(len(logits))]
        if per_image
        else [(logits.reshape(-1), labels.reshape(-1))]
    )
    losses = []
    for x, y in groups:
        keep = torch.ones_like(y, dtype=torch.bool) if ignore_index is None else y != ignore_index
        x, y = x[keep], y[keep]
        if y.numel() == 0:
            losses.append(logits.new_zeros(()))
            continue
        errors = torch.relu(1 - x * (2 * y.to(x.dtype) - 1))
        losses.append(lovasz_extension(errors, y == 1))
    return torch.stack(losses).mean()


def _softmax_groups(probas, labels, per_image, ignore_index):
    """(probabilities [C, N], labels [N]) of each image, or of the whole batch, void removed."""
    batch, num_classes = probas.shape[:2]
    probas, labels = probas.reshape(batch, num_classes, -1), labels.reshape(batch, -1)
    if per_image:
        groups = [(probas[b], labels[b]) for b in range(batch)]
    else:
        groups = [(probas.permute(1, 0, 2).reshape(num_classes, -1), labels.reshape(-1))]
    kept = []
    for p, y in groups:
        keep = torch.ones_like(y, dtype=torch.bool) if ignore_index is None else y != ignore_index
        kept.append((p[:, keep], y[keep]))
    return kept


def softmax(probas, labels, classes="present", per_image=False, ignore_index=None):
    """probas [B, C, *], labels [B, *]."""
    num_classes = probas.shape[1]
    losses = []
    for p, y in _softmax_groups(probas, labels, per_image, ignore_index):
        if y.numel() == 0:
            losses.append(probas.new_zeros(()))
            continue
        if classes == "present":
            counted = [c for c in range(num_classes) if (y == c).any()]
        elif classes == "all":
            counted = list(range(num_classes))
        else:
            counted = list(classes)
        class_losses = [
            lovasz_extension(((y == c).to(p.dtype) - p[c]).abs(), y == c) for c in counted
        ]
        losses.append(torch.stack(class_losses).mean() if class_losses else probas.new_zeros(()))
    return torch.stack(losses).mean()


def _activate(errors, activation):
    return torch.relu(errors) if activation == "relu" else torch.nn.functional.elu(errors) + 1


def hinge_variant(
    logits,
    labels,
    per_image=True,
    ignore_index=None,
    activation="relu",
    symmetric=False,
    empty="include",
):
    """The hinge variants: activation, symmetric (mean over the label-1 and label-0 problems)
    and empty="skip" (images, or halves, without foreground are left out of the average)."""
    logits, labels = logits.reshape(len(logits), -1), labels.reshape(len(labels), -1)
    if per_image:
        groups = [(logits[b], labels[b]) for b in range(len(logits))]
    else:
        groups = [(logits.reshape(-1), labels.reshape(-1))]
    values, counted = [], []
    for x, y in groups:
        keep = torch.ones_like(y, dtype=torch.bool) if ignore_index is None else y != ignore_index
        x, y = x[keep], y[keep]
        halves = [(x, y == 1)] + ([(-x, y == 0)] if symmetric else [])
        losses = []
        for xs, fg in halves:
            if empty == "skip" and not fg.any():
                continue
            if fg.numel() == 0:
                losses.append(logits.new_zeros(()))
                continue
            errors = _activate(1 - xs * (2 * fg.to(xs.dtype) - 1), activation)
            losses.append(lovasz_extension(errors, fg))
        counted.append(bool(losses))
        values.append(torch.stack(losses).mean() if losses else logits.new_zeros(()))
    values = torch.stack(values)
    if empty == "skip":
        n = sum(counted)
        return values.sum() / n if n else values.sum() * 0
    return values.mean()


def multilabel(
    scores,
    targets,
    kind="sigmoid",
    classes="present",
    per_image=False,
    ignore_index=None,
    class_weights=None,
):
    """One Lovász loss per channel: |y - p| (sigmoid; scores are probabilities) or the hinge."""
    batch, channels = scores.shape[:2]
    scores, targets = scores.reshape(batch, channels, -1), targets.reshape(batch, channels, -1)
    if per_image:
        groups = [(scores[b], targets[b]) for b in range(batch)]
    else:
        groups = [
            (
                scores.permute(1, 0, 2).reshape(channels, -1),
                targets.permute(1, 0, 2).reshape(channels, -1),
            )
        ]
    values = []
    for s, t in groups:
        total, weight = scores.new_zeros(()), 0.0
        for c in range(channels):
            keep = (
                torch.ones_like(t[c], dtype=torch.bool)
                if ignore_index is None
                else (t[c] != ignore_index)
            )
            x, y = s[c][keep], t[c][keep] == 1
            if classes == "present" and not y.any():
                continue
            if classes not in ("present", "all") and c not in classes:
                continue
            if y.numel() == 0:
                continue
            if kind == "sigmoid":
                errors = (y.to(x.dtype) - x).abs()
            else:
                errors = torch.relu(1 - x * (2 * y.to(x.dtype) - 1))
            w = 1.0 if class_weights is None else float(class_weights[c])
            total = total + w * lovasz_extension(errors, y)
            weight += w
        values.append(total / weight if weight else scores.new_zeros(()))
    return torch.stack(values).mean()


def softmax_weighted(probas, labels, class_weights, per_image=False, ignore_index=None):
    """Lovász-softmax over present classes with a weighted class mean."""
    num_classes = probas.shape[1]
    values = []
    for p, y in _softmax_groups(probas, labels, per_image, ignore_index):
        present = [c for c in range(num_classes) if (y == c).any()]
        num = sum(
            class_weights[c] * lovasz_extension(((y == c).to(p.dtype) - p[c]).abs(), y == c)
            for c in present
        )
        den = sum(class_weights[c] for c in present)
        values.append(num / den if den else probas.new_zeros(()))
    return torch.stack([torch.as_tensor(v, dtype=probas.dtype) for v in values]).mean()
