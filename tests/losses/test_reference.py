"""Agreement with segmentation-models-pytorch's LovaszLoss (a port of the authors' code)."""

import pytest
import torch
from segmentation_models_pytorch.losses import LovaszLoss

from lovaszseg.losses import LovaszHingeLoss, LovaszSoftmaxLoss

IGNORE = 255


def relative_l1(a, b):
    """Tie-aware gradient distance: the loss is piecewise linear, so ties make it non-unique."""
    return ((a.double() - b.double()).abs().sum() / b.double().abs().sum()).item()


# smp computes the Jaccard differences as differences of rounded float32 prefix Jaccards, which
# costs it ~1e-3 relative L1 on its gradient at 10^5 pixels a class; ours stays near 1e-6.
SMP_GRAD_RTOL = 5e-3


def _run(loss_fn, logits, labels):
    x = logits.clone().requires_grad_(True)
    loss = loss_fn(x, labels)
    loss.backward()
    return loss.detach(), x.grad


def voc_like_labels(batch, size, num_classes, generator):
    """A background, two or three objects per image, and void bands around each object."""
    labels = torch.zeros(batch, size, size, dtype=torch.long)
    for b in range(batch):
        for cls in torch.randint(1, num_classes, (3,), generator=generator).tolist():
            y0, x0 = torch.randint(0, size - size // 3, (2,), generator=generator).tolist()
            h, w = torch.randint(size // 8, size // 3, (2,), generator=generator).tolist()
            labels[b, y0 : y0 + h + 2, x0 : x0 + w + 2] = IGNORE
            labels[b, y0 + 1 : y0 + h + 1, x0 + 1 : x0 + w + 1] = cls
    return labels


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("ignore", [None, IGNORE])
def test_softmax_agrees_with_smp(per_image, ignore):
    g = torch.Generator().manual_seed(0)
    labels = voc_like_labels(4, 128, 21, g)
    if ignore is None:
        labels[labels == IGNORE] = 0
    logits = torch.randn(4, 21, 128, 128, generator=g) * 3
    loss_fn = LovaszSoftmaxLoss(per_image=per_image, ignore_index=ignore)
    ours = _run(loss_fn, logits, labels)
    ref = _run(LovaszLoss("multiclass", per_image=per_image, ignore_index=ignore), logits, labels)
    torch.testing.assert_close(ours[0], ref[0], rtol=2e-5, atol=1e-6)
    assert relative_l1(ours[1], ref[1]) < SMP_GRAD_RTOL
    # Against a float64 run (checked against the definition in test_exact), ours is the closer.
    exact = _run(loss_fn, logits.double(), labels)
    assert relative_l1(ours[1], exact[1]) < 1e-5
    assert relative_l1(ours[1], exact[1]) <= relative_l1(ref[1], exact[1])


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("ignore", [None, IGNORE])
def test_hinge_agrees_with_smp(per_image, ignore):
    g = torch.Generator().manual_seed(1)
    labels = (torch.rand(4, 1, 160, 160, generator=g) < 0.05).long()
    if ignore is not None:
        labels[:, :, :, :7] = IGNORE
    logits = torch.randn(4, 1, 160, 160, generator=g) * 2
    loss_fn = LovaszHingeLoss(per_image=per_image, ignore_index=ignore)
    ours = _run(loss_fn, logits, labels)
    ref = _run(LovaszLoss("binary", per_image=per_image, ignore_index=ignore), logits, labels)
    torch.testing.assert_close(ours[0], ref[0], rtol=2e-5, atol=1e-6)
    assert relative_l1(ours[1], ref[1]) < SMP_GRAD_RTOL
    exact = _run(loss_fn, logits.double(), labels)
    assert relative_l1(ours[1], exact[1]) < 1e-5


def test_confident_predictions_agree_with_smp():
    """Near-converged logits: most background errors sit above the smallest foreground error."""
    g = torch.Generator().manual_seed(2)
    labels = voc_like_labels(2, 96, 21, g)
    onehot = torch.nn.functional.one_hot(labels.clamp(max=20), 21).permute(0, 3, 1, 2)
    logits = 6.0 * onehot + torch.randn(2, 21, 96, 96, generator=g)
    ours = _run(LovaszSoftmaxLoss(ignore_index=IGNORE), logits, labels)
    ref = _run(LovaszLoss("multiclass", ignore_index=IGNORE), logits, labels)
    torch.testing.assert_close(ours[0], ref[0], rtol=2e-5, atol=1e-7)
    assert relative_l1(ours[1], ref[1]) < SMP_GRAD_RTOL
