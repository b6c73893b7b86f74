"""The engine against the definitions, closed forms and gradcheck, in float64."""

import itertools

import pytest
import torch

from lovaszseg.losses import LovaszSoftmaxLoss, lovasz_hinge, lovasz_softmax

from . import brute_force

IGNORE = 255


def _labels(shape, num_classes, generator, ignore_frac=0.0):
    labels = torch.randint(0, num_classes, shape, generator=generator)
    if ignore_frac:
        labels[torch.rand(shape, generator=generator) < ignore_frac] = IGNORE
    return labels


def _grad(fn, x):
    x = x.detach().clone().requires_grad_(True)
    loss = fn(x)
    loss.backward()
    return loss.detach(), x.grad


CASES = list(itertools.product([False, True], [None, IGNORE], range(6)))


@pytest.mark.path("torch")  # float64: the kernel computes in float32
@pytest.mark.parametrize(("per_image", "ignore", "seed"), CASES)
def test_hinge_matches_definition(per_image, ignore, seed):
    g = torch.Generator().manual_seed(seed)
    batch, size = (3, (2, 5)) if seed % 2 else (2, (7,))
    logits = torch.randn(batch, *size, generator=g, dtype=torch.float64) * 2
    labels = _labels((batch, *size), 2, g, 0.3 if ignore else 0.0)
    if seed == 5:
        labels[0] = 0  # an image without foreground
        if ignore:
            labels[1] = IGNORE  # an image without a valid pixel

    def ours(x):
        return lovasz_hinge(x, labels, per_image, ignore)

    def ref(x):
        return brute_force.hinge(x, labels, per_image, ignore)

    loss, grad = _grad(ours, logits)
    ref_loss, ref_grad = _grad(ref, logits)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)


SOFTMAX_CASES = list(
    itertools.product([False, True], [None, IGNORE], ["present", "all", [0, 2, 3]], range(4))
)


@pytest.mark.path("torch")  # float64: the kernel computes in float32
@pytest.mark.parametrize(("per_image", "ignore", "classes", "seed"), SOFTMAX_CASES)
def test_softmax_matches_definition(per_image, ignore, classes, seed):
    g = torch.Generator().manual_seed(100 + seed)
    batch, num_classes, size = (3, 4, (3, 3)) if seed % 2 else (2, 5, (8,))
    probas = torch.randn(batch, num_classes, *size, generator=g, dtype=torch.float64).softmax(1)
    labels = _labels((batch, *size), min(num_classes, 3), g, 0.3 if ignore else 0.0)
    if seed == 3 and ignore:
        labels[0] = IGNORE  # an image without a valid pixel

    def ours(p):
        return lovasz_softmax(p, labels, classes, per_image, ignore)

    def ref(p):
        return brute_force.softmax(p, labels, classes, per_image, ignore)

    loss, grad = _grad(ours, probas)
    ref_loss, ref_grad = _grad(ref, probas)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)


def _iou(pred, target, cls, valid):
    inter = ((pred == cls) & (target == cls) & valid).sum().item()
    union = (((pred == cls) | (target == cls)) & valid).sum().item()
    return inter / union


@pytest.mark.path("torch")  # float64: the kernel computes in float32
def test_softmax_is_tight_at_one_hot_probabilities():
    """At one-hot predictions the loss is the mean over counted classes of 1 - IoU."""
    g = torch.Generator().manual_seed(0)
    num_classes = 5
    labels = _labels((4, 16, 16), num_classes, g, 0.1)
    pred = torch.where(
        torch.rand(labels.shape, generator=g) < 0.3,
        torch.randint(0, num_classes, labels.shape, generator=g),
        labels,
    )
    pred[pred == IGNORE] = 0
    probas = torch.nn.functional.one_hot(pred, num_classes).permute(0, 3, 1, 2).double()
    valid = labels != IGNORE
    present = [c for c in range(num_classes) if (labels[valid] == c).any()]
    expected = sum(1 - _iou(pred, labels, c, valid) for c in present) / len(present)
    loss = lovasz_softmax(probas, labels, "present", per_image=False, ignore_index=IGNORE)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    per_image = [
        sum(1 - _iou(pred[b], labels[b], c, valid[b]) for c in cs) / len(cs)
        for b in range(4)
        for cs in [[c for c in range(num_classes) if (labels[b][valid[b]] == c).any()]]
    ]
    loss = lovasz_softmax(probas, labels, "present", per_image=True, ignore_index=IGNORE)
    assert loss.item() == pytest.approx(sum(per_image) / 4, rel=1e-12)


@pytest.mark.path("torch")  # float64: the kernel computes in float32
def test_hinge_is_tight_at_unit_logits():
    """At logits of ±1 the hinge errors are 0 or 2, so the loss is 2 (1 - IoU of the foreground)."""
    g = torch.Generator().manual_seed(1)
    labels = _labels((3, 20, 20), 2, g, 0.1)
    pred = torch.where(torch.rand(labels.shape, generator=g) < 0.2, 1 - labels.clamp(max=1), labels)
    pred[labels == IGNORE] = 0
    logits = (2.0 * pred - 1).double()
    valid = labels != IGNORE
    loss = lovasz_hinge(logits, labels, per_image=False, ignore_index=IGNORE)
    assert loss.item() == pytest.approx(2 * (1 - _iou(pred, labels, 1, valid)), rel=1e-12)
    loss = lovasz_hinge(logits, labels, per_image=True, ignore_index=IGNORE)
    expected = sum(2 * (1 - _iou(pred[b], labels[b], 1, valid[b])) for b in range(3)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.path("torch")  # float64: the kernel computes in float32
@pytest.mark.parametrize("per_image", [False, True])
def test_gradcheck(per_image):
    g = torch.Generator().manual_seed(3)
    labels = _labels((2, 4, 5), 3, g, 0.2)
    logits = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x: lovasz_softmax(x.softmax(1), labels, "present", per_image, IGNORE), (logits,)
    )
    binary = labels.clamp(max=1).masked_fill(labels == IGNORE, IGNORE)
    x = logits[:, 0].detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: lovasz_hinge(x, binary, per_image, IGNORE), (x,))


@pytest.mark.path("torch")  # float64: the kernel computes in float32
@pytest.mark.parametrize(
    ("per_image", "classes", "class_weights"),
    [
        (False, "present", None),
        (True, "present", None),
        (False, "all", [0.5, 1, 2, 1]),
        (True, [0, 2], None),
    ],
)
def test_softmax_inside_the_kernel_matches_the_functional_on_probabilities(
    per_image, classes, class_weights
):
    """LovaszSoftmaxLoss chains the softmax's backward itself: same loss and gradient as autograd
    through ``softmax`` + ``lovasz_softmax``, on a volume with void voxels."""
    g = torch.Generator().manual_seed(7)
    labels = _labels((2, 5, 3, 4), 4, g, 0.2)
    logits = torch.randn(2, 4, 5, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    options = dict(classes=classes, per_image=per_image, ignore_index=IGNORE)
    module = LovaszSoftmaxLoss(class_weights=class_weights, **options)

    loss = module(logits, labels)
    (grad,) = torch.autograd.grad(loss, logits)
    expected = lovasz_softmax(logits.softmax(1), labels, class_weights=class_weights, **options)
    (expected_grad,) = torch.autograd.grad(expected, logits)

    assert loss.item() == pytest.approx(expected.item(), rel=1e-14, abs=1e-15)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-14)
    assert torch.autograd.gradcheck(
        lambda x: module(x, labels), (logits.detach().requires_grad_(),)
    )
