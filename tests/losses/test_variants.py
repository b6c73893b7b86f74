"""The variants (multilabel, class weights, hinge variants, reductions) against definitions."""

import itertools

import pytest
import torch

from lovaszseg.losses import (
    LovaszMultilabelLoss,
    lovasz_hinge,
    lovasz_multilabel,
    lovasz_softmax,
)

from . import brute_force

IGNORE = 255


def _both(fn, ref, x):
    """Loss and input gradient of ours and of the brute force, in float64."""
    out = []
    for f in (fn, ref):
        xx = x.detach().clone().requires_grad_(True)
        loss = f(xx)
        loss.backward()
        out.append((loss.detach(), xx.grad))
    return out


def _assert_same(ours, ref):
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours[1], ref[1], rtol=1e-10, atol=1e-12)


def _binary(seed, batch=3, size=(4, 5), ignore=True):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, *size, generator=g, dtype=torch.float64) * 2
    labels = (torch.rand(batch, *size, generator=g) < 0.3).long()
    labels[1] = 0  # an image without foreground
    if ignore:
        labels[torch.rand(labels.shape, generator=g) < 0.2] = IGNORE
    return logits, labels


HINGE = list(
    itertools.product(
        [False, True], ["relu", "elu+1"], [False, True], ["include", "skip"], range(2)
    )
)


@pytest.mark.path("torch")  # float64: the kernel computes in float32
@pytest.mark.parametrize(("per_image", "activation", "symmetric", "empty", "seed"), HINGE)
def test_hinge_variants_match_definition(per_image, activation, symmetric, empty, seed):
    logits, labels = _binary(seed)
    options = dict(activation=activation, symmetric=symmetric, empty=empty)
    ours, ref = _both(
        lambda x: lovasz_hinge(x, labels, per_image, IGNORE, **options),
        lambda x: brute_force.hinge_variant(x, labels, per_image, IGNORE, **options),
        logits,
    )
    _assert_same(ours, ref)


def _multilabel(seed, batch=2, channels=3, size=(3, 4)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, channels, *size, generator=g, dtype=torch.float64)
    targets = (torch.rand(batch, channels, *size, generator=g) < 0.3).float()
    targets[0, 1] = 0  # a channel without positives in image 0
    targets[torch.rand(targets.shape, generator=g) < 0.15] = IGNORE
    return logits, targets


ML = list(
    itertools.product(
        ["sigmoid", "hinge"],
        ["present", "all", [0, 2]],
        [False, True],
        [None, (1.0, 2.0, 0.5)],
        range(2),
    )
)


@pytest.mark.path("torch")  # float64: the kernel computes in float32
@pytest.mark.parametrize(("kind", "classes", "per_image", "weights", "seed"), ML)
def test_multilabel_matches_definition(kind, classes, per_image, weights, seed):
    logits, targets = _multilabel(seed)

    def scores(x):
        return x.sigmoid() if kind == "sigmoid" else x

    ours, ref = _both(
        lambda x: lovasz_multilabel(
            scores(x), targets, kind, classes, per_image, IGNORE, class_weights=weights
        ),
        lambda x: brute_force.multilabel(
            scores(x), targets, kind, classes, per_image, IGNORE, weights
        ),
        logits,
    )
    _assert_same(ours, ref)


@pytest.mark.path("torch")  # float64: the kernel computes in float32
@pytest.mark.parametrize("per_image", [False, True])
def test_one_channel_multilabel_equals_the_binary_hinge(per_image):
    logits, labels = _binary(5)
    targets = labels.unsqueeze(1).double()
    multi = lovasz_multilabel(logits.unsqueeze(1), targets, "hinge", "all", per_image, IGNORE)
    assert multi == lovasz_hinge(logits, labels, per_image, IGNORE)


@pytest.mark.path("torch")  # float64: the kernel computes in float32
@pytest.mark.parametrize("per_image", [False, True])
def test_class_weights_match_definition_and_ones_change_nothing(per_image):
    g = torch.Generator().manual_seed(7)
    probas = torch.randn(3, 4, 5, 5, generator=g, dtype=torch.float64).softmax(1)
    labels = torch.randint(0, 3, (3, 5, 5), generator=g)
    labels[0, :2] = IGNORE
    weights = [0.5, 2.0, 1.0, 3.0]
    ours, ref = _both(
        lambda p: lovasz_softmax(
            p, labels, per_image=per_image, ignore_index=IGNORE, class_weights=weights
        ),
        lambda p: brute_force.softmax_weighted(p, labels, weights, per_image, IGNORE),
        probas,
    )
    _assert_same(ours, ref)
    plain = lovasz_softmax(probas, labels, per_image=per_image, ignore_index=IGNORE)
    ones = lovasz_softmax(
        probas, labels, per_image=per_image, ignore_index=IGNORE, class_weights=torch.ones(4)
    )
    assert plain == ones
    logits, targets = _multilabel(3)
    plain = lovasz_multilabel(logits.sigmoid(), targets, per_image=per_image, ignore_index=IGNORE)
    ones = lovasz_multilabel(
        logits.sigmoid(), targets, per_image=per_image, ignore_index=IGNORE, class_weights=[1, 1, 1]
    )
    assert plain == ones


def test_reductions():
    logits, labels = _binary(2, ignore=False)
    each = lovasz_hinge(logits, labels, reduction="none")
    assert each.shape == (3,)
    for b in range(3):
        single = lovasz_hinge(logits[b : b + 1], labels[b : b + 1])
        torch.testing.assert_close(each[b], single, rtol=1e-12, atol=1e-12)
    assert lovasz_hinge(logits, labels, reduction="sum") == pytest.approx(each.sum().item())
    assert lovasz_hinge(logits, labels) == pytest.approx(each.mean().item())
    skipped = lovasz_hinge(logits, labels, empty="skip", reduction="none")
    assert skipped[1] == 0  # image 1 has no foreground
    torch.testing.assert_close(skipped[0], each[0], rtol=1e-12, atol=1e-12)
    probas = logits.unsqueeze(1).sigmoid()
    probas = torch.cat([1 - probas, probas], 1)
    each = lovasz_softmax(probas, labels, per_image=True, reduction="none")
    assert each.shape == (3,)
    assert lovasz_softmax(probas, labels, per_image=True) == pytest.approx(each.mean().item())


def test_multilabel_module_applies_the_sigmoid():
    logits, targets = _multilabel(4)
    module = LovaszMultilabelLoss("sigmoid", ignore_index=IGNORE, class_weights=[1, 2, 3])
    expected = lovasz_multilabel(
        logits.sigmoid(), targets, ignore_index=IGNORE, class_weights=[1, 2, 3]
    )
    assert module(logits, targets) == expected
    module = LovaszMultilabelLoss("hinge", per_image=True, ignore_index=IGNORE)
    assert module(logits, targets) == lovasz_multilabel(
        logits, targets, "hinge", per_image=True, ignore_index=IGNORE
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: lovasz_softmax(
                torch.rand(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), class_weights=[1, 2]
            ),
            r"class_weights has shape \(2,\), expected \(3,\)",
        ),
        (
            lambda: lovasz_softmax(
                torch.rand(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), class_weights=[1, -2, 1]
            ),
            r"finite and >= 0",
        ),
        (
            lambda: lovasz_multilabel(torch.rand(2, 3, 4), torch.full((2, 3, 4), 0.5)),
            r"targets contain \[0.5\]; expected 0 or 1",
        ),
        (
            lambda: lovasz_multilabel(torch.rand(2, 3, 4), torch.zeros(2, 3, 5)),
            r"targets of shape \(2, 3, 5\) do not match scores of shape \(2, 3, 4\)",
        ),
        (
            lambda: lovasz_multilabel(torch.rand(2, 3, 4), torch.zeros(2, 3, 4), kind="soft"),
            r"kind='soft' is not one of",
        ),
        (
            lambda: lovasz_hinge(
                torch.rand(2, 4), torch.zeros(2, 4, dtype=torch.long), activation="gelu"
            ),
            r"activation='gelu'",
        ),
        (
            lambda: lovasz_hinge(
                torch.rand(2, 4), torch.zeros(2, 4, dtype=torch.long), empty="drop"
            ),
            r"empty='drop'",
        ),
        (
            lambda: lovasz_hinge(
                torch.rand(2, 4), torch.zeros(2, 4, dtype=torch.long), reduction="avg"
            ),
            r"reduction='avg'",
        ),
        (
            lambda: lovasz_softmax(
                torch.rand(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), sync="global"
            ),
            r"sync='global' needs an initialised",
        ),
    ],
)
def test_bad_options_raise_clear_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
