"""Synthetic stand-ins for the real datasets, written in their layouts and cached in the data root.

A config selects one as ``data.synthetic`` (``_target_`` and its settings); the DataModule asks it
to prepare its root and then reads the files as it reads real data.
"""

from lovaszseg.data.synthetic.roads import SyntheticRoads
from lovaszseg.data.synthetic.voc import SyntheticVOC

__all__ = ["SyntheticRoads", "SyntheticVOC"]
