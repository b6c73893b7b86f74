"""Datasets: DeepGlobe roads and Pascal VOC 2012 DataModules, their synthetic stand-ins and presets."""

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
