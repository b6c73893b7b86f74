"""Lovász losses, usable on their own: ``from lovaszseg.losses import lovasz_softmax``."""

from .functional import lovasz_hinge, lovasz_multilabel, lovasz_softmax
from .modules import LovaszHingeLoss, LovaszMultilabelLoss, LovaszSoftmaxLoss

__all__ = [
    "LovaszHingeLoss",
    "LovaszMultilabelLoss",
    "LovaszSoftmaxLoss",
    "lovasz_hinge",
    "lovasz_multilabel",
    "lovasz_softmax",
]
