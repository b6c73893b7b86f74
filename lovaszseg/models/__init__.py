"""The networks: any segmentation-models-pytorch architecture, built by name from ``conf/model``.

``lovaszseg.models.create_model`` is the ``_target_`` that model configs, and the network config
stored in every checkpoint, name; it stays importable from here.
"""

from lovaszseg.models.factory import create_model, without_download

__all__ = ["create_model", "without_download"]
