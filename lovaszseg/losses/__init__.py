"""Lovász losses, usable on their own: ``from lovaszseg.losses import lovasz_softmax``."""

from .lovasz import lovasz_hinge, lovasz_softmax
from .modules import LovaszHingeLoss, LovaszSoftmaxLoss

__all__ = ["LovaszHingeLoss", "LovaszSoftmaxLoss", "lovasz_hinge", "lovasz_softmax"]
