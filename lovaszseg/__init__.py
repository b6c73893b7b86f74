"""lovaszseg: exact, fast Lovász losses and a framework for honest segmentation loss comparisons."""

__version__ = "0.1.0"
