"""The C kernel itself against the brute-force definition, in float32 (what it computes in).

Inputs are quantised so that many errors tie exactly: the Lovász extension is the same whatever
order ties take, but its gradient may go to any pixel of a tie (a foreground and a background
pixel included), so the gradients with respect to the errors (the input's gradient, negated on
the foreground) are compared as sums over each tie group: the pixels of one row with equal error.
"""

import itertools

import pytest
import torch

from lovaszseg.losses import lovasz_hinge, lovasz_multilabel, lovasz_softmax, native

from . import brute_force

pytestmark = pytest.mark.path("native")
IGNORE = 255


def _loss_and_grad(fn, x):
    x = x.detach().clone().requires_grad_(True)
    loss = fn(x)
    loss.backward()
    return loss.detach().double(), x.grad.double()


def _group_sums(grad, keys):
    """Sums of ``grad`` over the groups of equal ``keys`` (one row of keys per element)."""
    _, ids = torch.unique(keys.reshape(-1, keys.shape[-1]), dim=0, return_inverse=True)
    return torch.zeros(int(ids.max()) + 1, dtype=torch.float64).index_add_(0, ids, grad.reshape(-1))


def _assert_matches(ours, ref, keys, fg):
    """``keys``: the row and the error of every element; ``fg``: whether it is foreground."""
    (loss, grad), (ref_loss, ref_grad) = ours, ref
    sign = 1.0 - 2.0 * fg.double()  # d error / d input: -1 on the foreground, +1 elsewhere
    grad, ref_grad = grad * sign, ref_grad * sign
    assert loss.item() == pytest.approx(ref_loss.item(), rel=2e-6, abs=1e-7)
    torch.testing.assert_close(
        _group_sums(grad, keys), _group_sums(ref_grad, keys), rtol=2e-5, atol=2e-6
    )


def _quantised(shape, g, scale=4):
    return (torch.randn(shape, generator=g) * scale).round() / scale


@pytest.mark.parametrize(
    ("per_image", "ignore", "seed"),
    list(itertools.product([False, True], [None, IGNORE], range(3))),
)
def test_hinge_kernel_matches_the_definition(per_image, ignore, seed):
    g = torch.Generator().manual_seed(seed)
    logits = _quantised((3, 5, 7), g)
    labels = torch.randint(0, 2, (3, 5, 7), generator=g)
    if ignore:
        labels[torch.rand(3, 5, 7, generator=g) < 0.3] = IGNORE
    ours = _loss_and_grad(lambda x: lovasz_hinge(x, labels, per_image, ignore), logits)
    assert native.library() is not None
    ref = _loss_and_grad(lambda x: brute_force.hinge(x.double(), labels, per_image, ignore), logits)
    image = torch.arange(3.0).view(3, 1, 1).expand_as(logits) * per_image
    fg = labels == 1
    errors = torch.where(fg, 1 - logits, 1 + logits)
    _assert_matches(ours, ref, torch.stack([image, errors], -1), fg)


@pytest.mark.parametrize(
    ("per_image", "classes", "seed"),
    list(itertools.product([False, True], ["present", "all"], range(3))),
)
def test_softmax_kernel_matches_the_definition(per_image, classes, seed):
    g = torch.Generator().manual_seed(10 + seed)
    probas = _quantised((2, 4, 6, 5), g, scale=2).softmax(1)
    labels = torch.randint(0, 3, (2, 6, 5), generator=g)
    labels[torch.rand(2, 6, 5, generator=g) < 0.2] = IGNORE
    ours = _loss_and_grad(lambda p: lovasz_softmax(p, labels, classes, per_image, IGNORE), probas)
    ref = _loss_and_grad(
        lambda p: brute_force.softmax(p.double(), labels, classes, per_image, IGNORE), probas
    )
    image = torch.arange(2.0).view(2, 1, 1, 1).expand_as(probas) * per_image
    channel = torch.arange(4.0).view(1, 4, 1, 1).expand_as(probas)
    fg = labels.unsqueeze(1) == channel
    errors = torch.where(fg, 1 - probas, probas)
    _assert_matches(ours, ref, torch.stack([image, channel, errors], -1), fg)


@pytest.mark.parametrize(
    ("kind", "per_image"), list(itertools.product(["sigmoid", "hinge"], [False, True]))
)
def test_multilabel_kernel_matches_the_definition(kind, per_image):
    g = torch.Generator().manual_seed(20)
    logits = _quantised((2, 3, 4, 6), g)
    targets = torch.randint(0, 2, (2, 3, 4, 6), generator=g)
    targets[torch.rand(2, 3, 4, 6, generator=g) < 0.2] = IGNORE
    scores = logits.sigmoid() if kind == "sigmoid" else logits
    ours = _loss_and_grad(
        lambda x: lovasz_multilabel(x, targets, kind, "present", per_image, IGNORE), scores
    )
    ref = _loss_and_grad(
        lambda x: brute_force.multilabel(x.double(), targets, kind, "present", per_image, IGNORE),
        scores,
    )
    image = torch.arange(2.0).view(2, 1, 1, 1).expand_as(scores) * per_image
    channel = torch.arange(3.0).view(1, 3, 1, 1).expand_as(scores)
    fg = targets == 1
    offset = 1.0 if kind == "hinge" else 0.0
    errors = torch.where(fg, 1 - scores, offset + scores)
    _assert_matches(ours, ref, torch.stack([image, channel, errors], -1), fg)
