"""The network menu: any segmentation-models-pytorch architecture and encoder, built by name.

``conf/model/*.yaml`` point here rather than at one smp class, so ``model=unet`` /
``model.encoder_name=efficientnet-b0`` pick anything smp ships. Pretrained encoder weights are
downloaded from the Hugging Face Hub by smp; where that cannot happen (no network, an offline
cache without them) the run stops at once with what to do, instead of a deep hub traceback.
"""

from __future__ import annotations

from typing import Any

from torch import nn

_NETWORK_ERROR_MODULES = ("huggingface_hub", "requests", "httpx", "urllib", "socket", "ssl")


def _is_download_error(err: BaseException) -> bool:
    return isinstance(err, OSError) or type(err).__module__.startswith(_NETWORK_ERROR_MODULES)


def create_model(
    arch: str,
    encoder_name: str,
    encoder_weights: str | None = None,
    in_channels: int = 3,
    classes: int = 1,
    **kwargs: Any,
) -> nn.Module:
    """``segmentation_models_pytorch.create_model`` with a clear error when weights are unreachable."""
    import segmentation_models_pytorch as smp

    try:
        return smp.create_model(
            arch,
            encoder_name=encoder_name,
            encoder_weights=encoder_weights,
            in_channels=in_channels,
            classes=classes,
            **kwargs,
        )
    except Exception as err:
        if encoder_weights is None or not _is_download_error(err):
            raise
        raise ConnectionError(
            f"model.encoder_weights={encoder_weights}: could not download the pretrained weights "
            f"of encoder {encoder_name!r} ({type(err).__name__}: {err}). Without network access, "
            "download them once where there is a network (they are cached under $HF_HOME) or "
            "train from scratch with model.encoder_weights=null"
        ) from err


def without_download(net_config: dict[str, Any]) -> dict[str, Any]:
    """The same network with random encoder weights: a checkpoint supplies every weight anyway."""
    if net_config.get("encoder_weights") is None:
        return net_config
    return {**net_config, "encoder_weights": None}
