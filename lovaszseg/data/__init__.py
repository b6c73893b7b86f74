"""Datasets: DeepGlobe roads and Pascal VOC 2012 DataModules and their transform presets.

The synthetic stand-ins live apart, in :mod:`lovaszseg.data.synthetic`.
"""

from lovaszseg.data.datamodule import SegmentationDataModule
from lovaszseg.data.deepglobe import DeepGlobeRoadDataModule
from lovaszseg.data.transforms import EvalPreset, TrainPreset
from lovaszseg.data.voc import VOCSegmentationDataModule

__all__ = [
    "DeepGlobeRoadDataModule",
    "EvalPreset",
    "SegmentationDataModule",
    "TrainPreset",
    "VOCSegmentationDataModule",
]
