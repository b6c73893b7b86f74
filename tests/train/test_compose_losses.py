"""Exact numbers for the pixel-wise baselines and the composite (weighted, scheduled) loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lovaszseg.losses import LovaszHingeLoss
from lovaszseg.objectives.compose import CompositeLoss, LossTerm
from lovaszseg.objectives.pixelwise import BinaryCrossEntropy, CrossEntropy


def test_bce_averages_over_valid_pixels_only():
    logits = torch.tensor([[[2.0, -1.0], [0.5, 9.0]]])  # [1,2,2]
    labels = torch.tensor([[[1, 0], [0, 255]]])
    expected = (
        -math.log(torch.sigmoid(torch.tensor(2.0)).item())
        - math.log(1 - torch.sigmoid(torch.tensor(-1.0)).item())
        - math.log(1 - torch.sigmoid(torch.tensor(0.5)).item())
    ) / 3
    loss = BinaryCrossEntropy(ignore_index=255)(logits.unsqueeze(1), labels)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_bce_all_ignored_is_zero_with_gradient():
    logits = torch.randn(2, 1, 3, 3, requires_grad=True)
    loss = BinaryCrossEntropy(ignore_index=255)(logits, torch.full((2, 3, 3), 255))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_bce_rejects_multichannel_logits():
    with pytest.raises(ValueError, match="one logit channel"):
        BinaryCrossEntropy()(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))


def test_ce_matches_torch_and_survives_all_ignored():
    logits = torch.randn(2, 4, 5, 5)
    labels = torch.randint(0, 4, (2, 5, 5))
    labels[0, 0] = 255
    expected = F.cross_entropy(logits, labels, ignore_index=255)
    assert CrossEntropy(255)(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    empty = CrossEntropy(255)(logits, torch.full_like(labels, 255))
    assert empty.item() == 0.0


def _combined() -> CompositeLoss:
    return CompositeLoss(
        terms={
            "lovasz_hinge": LossTerm(LovaszHingeLoss(ignore_index=255), weight=0.5),
            "bce": LossTerm(BinaryCrossEntropy(255), weight=0.5),
        },
        task="binary",
    )


def test_composite_total_is_weighted_sum_of_logged_terms():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8)
    labels = torch.randint(0, 2, (2, 8, 8))
    out = _combined()(logits, labels)
    hinge = LovaszHingeLoss(ignore_index=255)(logits, labels)
    bce = BinaryCrossEntropy(255)(logits, labels)
    assert set(out.terms) == {"lovasz_hinge", "bce"}
    assert out.terms["lovasz_hinge"].item() == pytest.approx(hinge.item())
    assert out.total.item() == pytest.approx(0.5 * hinge.item() + 0.5 * bce.item(), rel=1e-6)


def test_finetune_schedule_switches_terms_at_switch_epoch():
    loss = CompositeLoss(
        terms={
            "bce": LossTerm(BinaryCrossEntropy(255), phase="before_switch"),
            "lovasz_hinge": LossTerm(LovaszHingeLoss(ignore_index=255), phase="after_switch"),
        },
        task="binary",
        switch_epoch=3,
    )
    assert loss.active_terms(0) == ["bce"]
    assert loss.active_terms(2) == ["bce"]
    assert loss.active_terms(3) == ["lovasz_hinge"]
    logits, labels = torch.randn(1, 1, 4, 4), torch.randint(0, 2, (1, 4, 4))
    assert set(loss(logits, labels, epoch=4).terms) == {"lovasz_hinge"}
    loss.check_schedule(max_epochs=4)
    with pytest.raises(
        ValueError, match=r"only 3 epochs: terms \['lovasz_hinge'\] would never train"
    ):
        loss.check_schedule(max_epochs=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "ternary"}, "task must be one of"),
        ({"switch_epoch": 2}, "no term has phase"),
        ({"terms": {}}, "at least one term"),
    ],
)
def test_composite_rejects_bad_configuration(kwargs, message):
    args = {"terms": {"bce": LossTerm(BinaryCrossEntropy())}, "task": "binary"} | kwargs
    with pytest.raises(ValueError, match=message):
        CompositeLoss(**args)


def test_scheduled_terms_need_switch_epoch_and_valid_phase():
    with pytest.raises(ValueError, match="switch_epoch` is not set"):
        CompositeLoss({"bce": LossTerm(BinaryCrossEntropy(), phase="before_switch")}, "binary")
    with pytest.raises(ValueError, match="phase must be one of"):
        LossTerm(BinaryCrossEntropy(), phase="later")
