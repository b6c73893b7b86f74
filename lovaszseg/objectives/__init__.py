"""The framework's training objectives: named, weighted, phased loss terms (``compose``) and the
pixel-wise baselines (``pixelwise``), built from config. The Lovász losses themselves are the
standalone library ``lovaszseg.losses``, which imports nothing from here."""
